#!/usr/bin/env bash
# Remove the classbox service that deploy/install.sh --system installed.
# The lessons, the settings and the user stay unless --purge: a reinstall picks them up again.
set -euo pipefail

prefix=/opt/classbox
data=/var/lib/classbox
defaults=/etc/default/classbox
unit=/etc/systemd/system/classbox.service
dropins=/etc/systemd/system/classbox.service.d   # made by `systemctl edit classbox`

usage() {
    cat <<EOF
usage: $0 [--purge]

Stop and disable the classbox service, remove its unit and its code ($prefix).
Kept: the data ($data), the settings ($defaults, $dropins) and the user classbox.
  --purge      remove those too: every lesson on the box is gone
  -h, --help   show this help
EOF
}

purge=0
while [ $# -gt 0 ]; do
    case $1 in
        --purge) purge=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done
if [ "$(id -u)" -ne 0 ]; then
    echo "removing the service needs root: sudo $0" >&2
    exit 1
fi

if [ -d /run/systemd/system ]; then
    systemctl disable --now --quiet classbox.service 2>/dev/null || true   # not installed: nothing to stop
elif command -v systemctl >/dev/null; then
    systemctl disable --quiet classbox.service 2>/dev/null || true         # works in a chroot too
fi
removed=() kept=()
[ -e "$unit" ] && removed+=("the service")
[ -e "$prefix" ] && removed+=("$prefix")
rm -f /etc/systemd/system/multi-user.target.wants/classbox.service "$unit"
rm -rf "$prefix"

if [ "$purge" -eq 1 ]; then
    for path in "$data" "$defaults" "$dropins"; do
        [ -e "$path" ] && removed+=("$path") && rm -rf "$path"
    done
    if getent passwd classbox >/dev/null; then
        userdel classbox
        removed+=("the user classbox")
    fi
    if getent group classbox >/dev/null; then   # userdel leaves the group where USERGROUPS_ENAB is off
        groupdel classbox
    fi
else
    [ -e "$data" ] && kept+=("$data (the lessons and state, $(du -sh "$data" | cut -f1))")
    [ -e "$defaults" ] && kept+=("$defaults")
    [ -e "$dropins" ] && kept+=("$dropins")
    getent passwd classbox >/dev/null && kept+=("the user classbox")
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reset-failed classbox.service 2>/dev/null || true
fi

if [ ${#removed[@]} -gt 0 ]; then
    echo "removed: $(printf '%s, ' "${removed[@]}" | sed 's/, $//')"
else
    echo "classbox was not installed here"
fi
if [ ${#kept[@]} -gt 0 ]; then
    echo "kept: $(printf '%s, ' "${kept[@]}" | sed 's/, $//') (remove with $0 --purge)"
fi
