#!/usr/bin/env bash
# Regenerate the demo channel shipped in classbox/demo/.
# Usage: deploy/demo/build.sh KEYDIR   (KEYDIR holds the demo publisher.key; made with `classbox keygen` if absent)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
keydir=${1:?usage: deploy/demo/build.sh KEYDIR}
[ -f "$keydir/publisher.key" ] || classbox keygen --out "$keydir"
python3 "$here/make_demo.py" "$here/src"
rm -rf "$top/classbox/demo"
classbox channel build "$here/src" --key "$keydir/publisher.key" --out "$top/classbox/demo" --expires-days 3650
cp "$keydir/publisher.pub" "$top/classbox/demo/demo.pub"
classbox channel verify "$top/classbox/demo" --pubkey "$top/classbox/demo/demo.pub"
