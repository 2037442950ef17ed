#!/usr/bin/env bash
# Install what the benchmarks need (nginx, wrk, curl; classbox in .venv) and run the serving benchmark.
# Extra arguments go to bench/serve_bench.py (e.g. --json bench/out/results.json);
# `bench/run.sh sync [...]` runs bench/sync_bench.py instead.
set -euo pipefail
. "$(dirname "$0")/../deploy/lib.sh"
apt_install /usr/sbin/nginx:nginx wrk:wrk curl:curl
make_venv ""
cd "$top"
if [ "${1:-}" = sync ]; then shift; PATH="$venv/bin:$PATH" exec "$venv/bin/python" bench/sync_bench.py "$@"; fi
PATH="$venv/bin:$PATH" exec "$venv/bin/python" bench/serve_bench.py "$@"
