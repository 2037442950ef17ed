#!/usr/bin/env bash
# Install what the benchmarks need (nginx, wrk, curl; classbox in .venv) and run the serving benchmark.
# Extra arguments go to bench/serve_bench.py (e.g. --json bench/out/results.json);
# `bench/run.sh sync [...]` runs bench/sync_bench.py instead, `bench/run.sh remote [...]`
# bench/remote_latency.py (which needs only classbox in .venv), `bench/run.sh load [...]`
# bench/load_bench.py (which needs only nginx besides), and `bench/run.sh smartedu [...]`
# bench/smartedu_bench.py (nginx and curl besides).
set -euo pipefail
. "$(dirname "$0")/../deploy/lib.sh"
if [ "${1:-}" = remote ]; then
    shift; make_venv ""; cd "$top"
    PATH="$venv/bin:$PATH" exec "$venv/bin/python" bench/remote_latency.py "$@"
fi
if [ "${1:-}" = load ]; then
    shift; apt_install /usr/sbin/nginx:nginx; make_venv ""; cd "$top"
    PATH="$venv/bin:$PATH" exec "$venv/bin/python" bench/load_bench.py "$@"
fi
if [ "${1:-}" = smartedu ]; then
    shift; apt_install /usr/sbin/nginx:nginx curl:curl; make_venv ""; cd "$top"
    PATH="$venv/bin:$PATH" exec "$venv/bin/python" bench/smartedu_bench.py "$@"
fi
apt_install /usr/sbin/nginx:nginx wrk:wrk curl:curl
make_venv ""
cd "$top"
if [ "${1:-}" = sync ]; then shift; PATH="$venv/bin:$PATH" exec "$venv/bin/python" bench/sync_bench.py "$@"; fi
PATH="$venv/bin:$PATH" exec "$venv/bin/python" bench/serve_bench.py "$@"
