#!/usr/bin/env bash
# Install classbox and start the box on the bundled demo content.
#
# As root on a machine where systemd runs (or with --system): install the box as a service that
# starts at boot. Otherwise (or with --dev): install into .venv in this checkout and serve in the
# foreground. Run it again to upgrade: the service gets the new code, its data stays.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

prefix=/opt/classbox                # the service's code: a virtual environment, replaced on upgrade
data=/var/lib/classbox              # the box's lessons and state (the unit's StateDirectory=)
defaults=/etc/default/classbox      # the technician's CLASSBOX_* settings
unit=/etc/systemd/system/classbox.service
build=""                            # a temporary copy of the checkout to build from
trap '[ -z "$build" ] || rm -rf "$build"' EXIT

usage() {
    cat <<EOF
usage: $0 [--system [--no-start] | --dev] [SERVE OPTIONS...]

  --system     install the service: code in $prefix, data in $data, settings in $defaults,
               started now and at every boot (the default as root where systemd runs)
  --no-start   with --system: install and enable, do not start (building a disk image in a chroot)
  --dev        install into .venv in this checkout and run \`classbox serve\` in the foreground
               (the default otherwise); SERVE OPTIONS go to it, e.g. --port 8000 --data DIR
  -h, --help   show this help

Remove the service with deploy/uninstall.sh.
EOF
}

system_venv() {
    # Create $prefix/venv with the system's Python (>= 3.11) and install this checkout into it.
    # Not a pyenv or other personal Python: the service's user must be able to read it.
    local python=${PYTHON:-/usr/bin/python3} venv=$prefix/venv
    apt_install "$python:python3"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "classbox needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2
        exit 1
    fi
    # A Python upgrade leaves the old environment pointing at an interpreter that is gone: rebuild it.
    if [ -x "$venv/bin/python" ] &&
        [ "$("$venv/bin/python" -c 'import sys; print(sys.version_info[:2])' 2>/dev/null)" != \
          "$("$python" -c 'import sys; print(sys.version_info[:2])')" ]; then
        rm -rf "$venv"
    fi
    if [ ! -x "$venv/bin/python" ]; then
        mkdir -p "$prefix"
        "$python" -m venv "$venv" 2>/dev/null || { apt_install ensurepip:python3-venv && "$python" -m venv "$venv"; }
    fi
    # Build from a clean copy: no root-owned build/ left in the checkout, no stale files from an old build/.
    build=$(mktemp -d)
    cp -r "$top/pyproject.toml" "$top/README.md" "$top/classbox" "$build/"
    # pip fetches and builds everything before it replaces anything, so a failure (no network) leaves
    # the running box as it was.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$build"
}

system_user() {
    # Make the system user and group classbox, in plugdev (where it exists) to read USB drives.
    if ! getent passwd classbox >/dev/null; then
        useradd --system --user-group --home-dir "$data" --no-create-home --shell /usr/sbin/nologin \
            --comment "classbox classroom box" classbox
    fi
    if getent group plugdev >/dev/null; then
        usermod -a -G plugdev classbox
    fi
}

write_defaults() {
    # Write $defaults with commented examples, only if there is none: it holds the technician's settings.
    [ -e "$defaults" ] && return 0
    cat >"$defaults" <<'EOF'
# Settings of the classbox service, read at each start (systemctl restart classbox after a change).
# Every CLASSBOX_* variable is described in the README; a few examples:
#CLASSBOX_PORT=8080
#CLASSBOX_SYNC_SOURCES=http://10.0.0.2:8080/mirror,/media/usb0
#CLASSBOX_SYNC_WINDOWS=22:00-06:00
#CLASSBOX_SYNC_MAX_RATE=256K
#CLASSBOX_QUOTA=20G
#CLASSBOX_ZEROCONF_INTERFACES=all
EOF
    chmod 0644 "$defaults"
}

tv_address() {
    # Print the TV page's address as the box itself shows it: its LAN address and the port in $defaults.
    "$prefix/venv/bin/python" - "$defaults" 2>/dev/null <<'EOF' || echo "http://<this machine's address>:8080/tv"
import shlex, sys
from classbox.config import Config
from classbox.netinfo import url_host
words = shlex.split(open(sys.argv[1], encoding="utf-8").read(), comments=True)
config = Config.from_env(dict(word.split("=", 1) for word in words if "=" in word))
print(f"http://{url_host(config.host)}:{config.port}/tv")
EOF
}

version() {
    "$prefix/venv/bin/classbox" --version | awk '{print $NF}'
}

system_install() {
    local start=$1 running=0
    if [ "$(id -u)" -ne 0 ]; then
        echo "a system install needs root: sudo $0 --system (or $0 --dev to serve from this checkout)" >&2
        exit 1
    fi
    [ -d /run/systemd/system ] && running=1

    system_user
    system_venv
    write_defaults
    install -m 0644 "$top/systemd/classbox.service" "$unit"

    if [ "$running" -eq 1 ]; then
        systemctl daemon-reload
        systemctl enable --quiet classbox.service
    elif command -v systemctl >/dev/null; then
        systemctl enable --quiet classbox.service   # works without a running systemd, e.g. in a chroot
    else
        mkdir -p /etc/systemd/system/multi-user.target.wants
        ln -sf "$unit" /etc/systemd/system/multi-user.target.wants/classbox.service
    fi

    if [ "$running" -eq 0 ]; then
        [ "$start" -eq 1 ] && echo "systemd is not running here: the box starts at the next boot"
        echo "installed classbox $(version), enabled, not started"
        return 0
    fi
    if [ "$start" -eq 0 ]; then
        if systemctl is-active --quiet classbox.service; then
            echo "installed classbox $(version); the running box keeps the old code until: systemctl restart classbox"
        else
            echo "installed classbox $(version), enabled, not started: systemctl start classbox"
        fi
        return 0
    fi
    # Type=notify: this returns once the box is serving, or fails if it does not come up.
    if ! systemctl restart classbox.service; then
        echo "classbox did not start; see: journalctl -u classbox -n 50" >&2
        exit 1
    fi
    echo "classbox $(version) is running, and starts at every boot"
    echo "  电视打开 (TV):  $(tv_address)"
    echo "  logs:          journalctl -u classbox"
    echo "  settings:      $defaults (then: systemctl restart classbox)"
    echo "  data:          $data"
}

mode="" start=1 serve_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --system) mode=system ;;
        --dev) mode=dev ;;
        --no-start) start=0 ;;
        -h | --help) usage; exit 0 ;;
        *) serve_args+=("$1") ;;
    esac
    shift
done
if [ -z "$mode" ]; then
    if [ "$(id -u)" -eq 0 ] && [ -d /run/systemd/system ]; then mode=system; else mode=dev; fi
fi

if [ "$mode" = system ]; then
    if [ ${#serve_args[@]} -gt 0 ]; then
        echo "the service takes its settings from $defaults, not options (${serve_args[*]});" \
            "to serve in the foreground: $0 --dev ${serve_args[*]}" >&2
        exit 2
    fi
    system_install "$start"
else
    if [ "$start" -eq 0 ]; then
        echo "--no-start goes with --system" >&2
        exit 2
    fi
    make_venv ""
    exec "$venv/bin/classbox" serve "${serve_args[@]}"
fi
