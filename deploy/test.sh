#!/usr/bin/env bash
# Install what the tests need (Debian: chromium, nginx, ffmpeg, a CJK font, shellcheck, systemd-analyze;
# Python: classbox[test])
# and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
apt_install /usr/bin/chromium:chromium /usr/sbin/nginx:nginx ffmpeg:ffmpeg \
    /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc:fonts-wqy-zenhei shellcheck:shellcheck systemd-analyze:systemd
make_venv "[test]"
cd "$top"
exec "$venv/bin/python" -m pytest -q "$@"
