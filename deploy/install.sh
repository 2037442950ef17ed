#!/usr/bin/env bash
# Install classbox into .venv and start the box on the bundled demo content.
# Extra arguments go to `classbox serve` (e.g. --port 8000, --data DIR).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
make_venv ""
exec "$venv/bin/classbox" serve "$@"
