# Shared by deploy/install.sh and deploy/test.sh: a Python >= 3.11 virtual environment in .venv.
# shellcheck shell=bash

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$top/.venv"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

apt_install() {
    # Install Debian packages that are missing; $@ are "command:package" pairs.
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || [ -e "${pair%%:*}" ] || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

make_venv() {
    # Create .venv (Python >= 3.11) and install classbox into it with the given extras.
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "classbox needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2
        exit 1
    fi
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv" 2>/dev/null || { apt_install ensurepip:python3-venv && "$python" -m venv "$venv"; }
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$top$1"
}
