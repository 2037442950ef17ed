#!/usr/bin/env bash
# Build a flashable disk image: Debian 12 (bookworm) with classbox installed and enabled.
# Needs root; uses no loop devices and mounts nothing but /proc and /sys inside its own chroot.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh disable=SC1091
. "$here/lib.sh"  # apt_install

usage() {
    cat <<'EOF'
usage: deploy/build-image.sh [--arch amd64|arm64] [--out FILE] [--cache DIR] [--src DIR]
                             [--mirror URL] [--root-size MIB] [--data-size MIB]
                             [--refresh-base] [--keep-work]

Builds FILE (default build/classbox-bookworm-ARCH.img), a disk image to write to an SD card, USB
drive or disk: Debian 12 with classbox installed by `deploy/install.sh --system --no-start` and
enabled, so that the box serves on port 8080 from its first boot.

  1  FAT32 "CLASSBOX"            /boot/firmware: boot loader, kernel, initrd, classbox.toml
                                 (256 MiB; 512 MiB on arm64, which also holds the Pi firmware)
  2  ext4 "CLASSBOX-ROOT"        /: Debian, classbox in /opt/classbox/venv
  3  ext4 "CLASSBOX-DATA"        /var/lib/classbox, grown to the end of the card at boot

amd64: GPT, UEFI with systemd-boot (EFI/BOOT/BOOTX64.EFI).
arm64: MBR, Raspberry Pi 3/4 firmware (config.txt, cmdline.txt) and UEFI with systemd-boot
       (EFI/BOOT/BOOTAA64.EFI) on the same partition.

options:
  --arch ARCH        amd64 (default) or arm64
  --out FILE         where to write the image (default build/classbox-bookworm-ARCH.img)
  --cache DIR        base systems and the build's log (default deploy/.image-cache)
  --src DIR          the classbox checkout to install (default: this one)
  --mirror URL       Debian mirror (default http://deb.debian.org/debian)
  --root-size MIB    size of the root partition (default: what it holds + 50%, at least +512 MiB)
  --data-size MIB    size of the data partition in the image (default 256; it grows at boot)
  --refresh-base     build the cached base system again (new Debian updates)
  --keep-work        keep the work folder (the root tree and partition images) for a look

Needs: root; Debian packages debootstrap, dosfstools, mtools, fdisk, e2fsprogs (installed when
missing), and for arm64 on another machine qemu-user-static with binfmt_misc; network to the
Debian mirror and to PyPI. The first build takes the base system from the mirror and caches it;
a rebuild only installs classbox again. The log of each build is CACHE/build-ARCH.log.
EOF
}

arch=amd64 out="" cache="$here/.image-cache" src="$top" mirror=http://deb.debian.org/debian
root_size="" data_size=256 refresh_base=0 keep_work=0
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --arch|--out|--cache|--src|--mirror|--root-size|--data-size)
            [ $# -ge 2 ] || { echo "$1 needs a value (see --help)" >&2; exit 2; }
            case $1 in
                --arch) arch=$2 ;; --out) out=$2 ;; --cache) cache=$2 ;; --src) src=$2 ;;
                --mirror) mirror=$2 ;; --root-size) root_size=$2 ;; --data-size) data_size=$2 ;;
            esac
            shift 2 ;;
        --refresh-base) refresh_base=1; shift ;;
        --keep-work) keep_work=1; shift ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $arch in amd64|arm64) ;; *) echo "--arch must be amd64 or arm64, not $arch" >&2; exit 2 ;; esac
for n in "$data_size" ${root_size:+"$root_size"}; do
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 64 ]; then echo "sizes are whole MiB, at least 64: $n" >&2; exit 2; fi
done
if [ ! -f "$src/pyproject.toml" ] || [ ! -x "$src/deploy/install.sh" ]; then
    echo "--src $src is not a classbox checkout (no pyproject.toml, deploy/install.sh)" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "build-image.sh needs root (debootstrap, chroot, device nodes): run it as root or with sudo" >&2
    exit 1
fi

suite=bookworm
out=${out:-$top/build/classbox-$suite-$arch.img}
mkdir -p "$cache" "$(dirname "$out")"
cache=$(cd "$cache" && pwd) src=$(cd "$src" && pwd)
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
log="$cache/build-$arch.log"
work="$cache/work-$arch"
root="$work/root"
image_dir="$here/image"

# Time limits of the long steps, in seconds; a foreign architecture runs under emulation, ~5x slower.
slow=1
[ "$(dpkg --print-architecture)" = "$arch" ] || slow=5
limit_bootstrap=$((1800 * slow)) limit_apt=$((1800 * slow)) limit_install=$((1200 * slow))

step() { printf '[%5ss] %s\n' "$SECONDS" "$*"; }
logged() {
    # Run a command with its output in the log; on failure show the log's end.
    local rc=0
    echo "+ $*" >>"$log"
    "$@" >>"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "failed (exit $rc): $*" >&2
        echo "--- last lines of $log ---" >&2
        tail -n 40 "$log" >&2
        exit "$rc"
    fi
}
in_root() {
    # in_root SECONDS COMMAND...: run COMMAND in the chroot with a clean environment.
    local limit=$1
    shift
    local proxy=() name
    for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [ -z "${!name:-}" ] || proxy+=("$name=${!name}")
    done
    logged timeout "$limit" chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PIP_CERT="$build_ca" SSL_CERT_FILE="$build_ca" \
        ${proxy[@]+"${proxy[@]}"} "$@"
}
# pip in the chroot trusts what this machine trusts (a network with a TLS proxy has its own CA);
# the bundle is removed before the image is made, so the image trusts only Debian's CAs.
build_ca=/tmp/classbox-build-ca.crt

mounts=()
mount_chroot() {
    local fs
    for fs in proc sysfs; do
        local at="$root/${fs%fs}"
        mountpoint -q "$at" && continue
        mount -t "$fs" "$fs" "$at"
        mounts+=("$at")
    done
}
umount_chroot() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}"
    done
    mounts=()
}
remove_work() {
    # Never delete through a mount point (/proc, /sys of the chroot; a killed build may have left them).
    local at
    for at in "$root/proc" "$root/sys"; do ! mountpoint -q "$at" || umount "$at" || umount -l "$at"; done
    if grep -q " $work/" /proc/mounts; then
        echo "not removing $work: something is still mounted under it" >&2
        return 1
    fi
    rm -rf --one-file-system "$work"
}
cleanup() {
    local rc=$?
    umount_chroot
    rm -f "$out.partial"
    if [ "$keep_work" -eq 0 ] && [ -d "$work" ]; then remove_work || rc=1; fi
    [ "$rc" -eq 0 ] || echo "build-image.sh failed after ${SECONDS}s; log: $log" >&2
    exit "$rc"
}
exec 9>"$cache/lock-$arch"
if ! flock -n 9; then
    echo "another build-image.sh for $arch is running (it holds $cache/lock-$arch)" >&2
    exit 1
fi
: >"$log"
trap cleanup EXIT
trap 'exit 130' INT TERM

host_tools() {
    # apt waits for another apt run on this machine instead of failing at once.
    local conf="$cache/apt-wait.conf"
    echo 'DPkg::Lock::Timeout "600";' >"$conf"
    export APT_CONFIG="$conf"
    apt_install debootstrap:debootstrap mkfs.vfat:dosfstools mcopy:mtools sfdisk:fdisk mkfs.ext4:e2fsprogs \
        chroot:coreutils
    if [ "$slow" -ne 1 ]; then
        apt_install "qemu-$(qemu_arch)-static:qemu-user-static" update-binfmts:binfmt-support
        foreign_binfmt
    fi
}
qemu_arch() { case $arch in arm64) echo aarch64 ;; amd64) echo x86_64 ;; esac; }
foreign_binfmt() {
    # A foreign root runs its programs through qemu-user-static, registered with binfmt_misc.
    local entry
    entry="/proc/sys/fs/binfmt_misc/qemu-$(qemu_arch)"
    [ -e /proc/sys/fs/binfmt_misc/register ] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
        { echo "binfmt_misc is not available: cannot run $arch programs on this machine" >&2; exit 1; }
    [ -e "$entry" ] || update-binfmts --enable "qemu-$(qemu_arch)" >>"$log" 2>&1 || true
    if ! grep -q '^enabled' "$entry" 2>/dev/null || ! grep -q '^flags: .*F' "$entry"; then
        echo "qemu-$(qemu_arch) is not registered with binfmt_misc (with flag F): cannot run $arch programs" >&2
        exit 1
    fi
}

# The base system: everything but classbox, cached as a tar keyed by what went into it.
components=main
base_packages=(systemd-sysv udev kmod dbus systemd-resolved systemd-timesyncd initramfs-tools
    systemd-boot-efi python3 python3-venv ca-certificates iproute2 dosfstools e2fsprogs fdisk
    cloud-guest-utils tzdata)
case $arch in
    amd64) base_packages+=(linux-image-amd64) ;;
    arm64) base_packages+=(linux-image-arm64 raspi-firmware); components=main,non-free-firmware ;;
esac
base_recipe="3 $suite $arch $components $mirror ${base_packages[*]}"
base_tar="$cache/base-$suite-$arch-$(printf '%s' "$base_recipe" | sha256sum | cut -c1-12).tar"

ensure_dev_nodes() {
    # The few device nodes programs in the chroot use; no bind mount of the host's /dev.
    local spec name major minor
    for spec in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<<"$spec"
        [ -c "$root/dev/$name" ] || { rm -f "$root/dev/$name"; mknod -m 666 "$root/dev/$name" c "$major" "$minor"; }
    done
}

build_base() {
    step "debootstrap $suite $arch from $mirror (cached for next time in $base_tar)"
    # Mirrors keep the security archive beside the main one: .../debian and .../debian-security.
    local security_mirror=http://deb.debian.org/debian-security
    case $mirror in */debian|*/debian/) security_mirror="${mirror%/}-security" ;; esac
    logged timeout "$limit_bootstrap" debootstrap --variant=minbase --arch="$arch" --components="$components" \
        --include=systemd-sysv,ca-certificates "$suite" "$root" "$mirror"
    cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite ${components//,/ }
deb $mirror $suite-updates ${components//,/ }
deb $security_mirror $suite-security ${components//,/ }
EOF
    ensure_dev_nodes
    with_network_and_no_daemons
    mount_chroot
    step "install the kernel, Python and the rest of the base system"
    in_root "$limit_apt" apt-get update -qq
    in_root "$limit_apt" apt-get -y -qq -o Dpkg::Options::=--force-confold dist-upgrade
    in_root "$limit_apt" apt-get -y -qq -o Dpkg::Options::=--force-confold install --no-install-recommends \
        "${base_packages[@]}"
    in_root 300 apt-get clean
    umount_chroot
    without_build_helpers
    logged tar --numeric-owner --xattrs --xattrs-include='*' -C "$root" -cf "$base_tar.partial" .
    mv "$base_tar.partial" "$base_tar"
}

with_network_and_no_daemons() {
    # Name resolution for apt and pip in the chroot, and no service started by a package's install.
    rm -f "$root/etc/resolv.conf"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    cp -L /etc/ssl/certs/ca-certificates.crt "$root$build_ca" 2>/dev/null ||
        cp -L "$root/etc/ssl/certs/ca-certificates.crt" "$root$build_ca"
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
}
without_build_helpers() {
    rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf" "$root$build_ca"
    # systemd-resolved's stub, as its package set it up.
    ln -s ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
}

copy_checkout() {
    # The working tree as it is (uncommitted changes too), without what is made from it.
    local dest=$1
    mkdir -p "$dest"
    tar -C "$src" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
        --exclude=./content_cache --exclude=./deploy/.image-cache --exclude=./deploy/demo/src \
        --exclude=./bench/out --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
        --owner=0 --group=0 -cf - . | tar -C "$dest" -xf -
}

install_classbox() {
    local dest=/opt/classbox/src
    step "install classbox: deploy/install.sh --system --no-start in the chroot"
    rm -rf "$root$dest"
    copy_checkout "$root$dest"
    in_root "$limit_install" "$dest/deploy/install.sh" --system --no-start
    [ -x "$root/opt/classbox/venv/bin/classbox" ] ||
        { echo "install.sh left no /opt/classbox/venv/bin/classbox" >&2; exit 1; }
    [ -L "$root/etc/systemd/system/multi-user.target.wants/classbox.service" ] ||
        { echo "install.sh did not enable classbox.service" >&2; exit 1; }
    grep -q '^classbox:' "$root/etc/passwd" || { echo "install.sh made no user classbox" >&2; exit 1; }
    in_root 300 /opt/classbox/venv/bin/classbox --help
    # An editable install runs from the copy: keep it then, else it is dead weight.
    local where
    where=$(chroot "$root" /opt/classbox/venv/bin/python -c 'import classbox; print(classbox.__file__)')
    case $where in "$dest"/*) echo "classbox runs from $dest (editable install); kept" >>"$log" ;;
        *) rm -rf "${root:?}$dest" ;; esac
}

subst() {
    # subst FILE NAME=VALUE...: FILE with each @NAME@ replaced.
    local text pair
    text=$(<"$1")
    shift
    for pair in "$@"; do text=${text//@${pair%%=*}@/"${pair#*=}"}; done
    printf '%s\n' "$text"
}

configure() {
    step "configure the image: fstab, journal in RAM, network, first-boot growth, boot loader"
    tar -C "$image_dir/rootfs" --owner=0 --group=0 -cf - . | tar -C "$root" --no-overwrite-dir -xf -
    local gid
    gid=$(awk -F: '$1 == "classbox" { print $3 }' "$root/etc/group")
    cat >"$root/etc/fstab" <<EOF
# classbox image. Power may be cut at any time: the root is written to as little as possible
# (noatime, journal in RAM, /tmp in RAM, no swap); the lessons live on their own partition.
PARTUUID=$root_partuuid  /                  ext4   noatime,commit=60,errors=remount-ro  0 1
# The boot partition, with classbox.toml; readable by group classbox only (it may hold a password hash).
PARTUUID=$boot_partuuid  /boot/firmware     vfat   noatime,nofail,x-systemd.device-timeout=3min,uid=0,gid=$gid,fmask=0137,dmask=0027  0 2
# nofail: a box whose data partition is missing still boots, and classbox (which needs it) does not start.
# The waits are long: a slow card's partitions may show up a minute into the boot.
PARTUUID=$data_partuuid  /var/lib/classbox  ext4   noatime,nofail,x-systemd.device-timeout=3min,x-systemd.growfs  0 2
tmpfs  /tmp  tmpfs  mode=1777,nosuid,nodev,size=25%  0 0
EOF
    local device=/dev/disk/by-partuuid/$data_partuuid device_unit fsck_unit
    device_unit=$(systemd-escape --path --suffix=device "$device")
    fsck_unit="systemd-fsck@$(systemd-escape --path "$device").service"
    subst "$image_dir/classbox-grow-data.service.in" "DEVICE=$device" "DEVICE_UNIT=$device_unit" \
        "FSCK_UNIT=$fsck_unit" >"$root/etc/systemd/system/classbox-grow-data.service"
    in_root 120 systemctl enable classbox-grow-data.service systemd-networkd.service \
        systemd-resolved.service systemd-timesyncd.service
    ln -sf /usr/share/zoneinfo/Asia/Shanghai "$root/etc/localtime"
    echo Asia/Shanghai >"$root/etc/timezone"
    # A new machine id on each box's first boot (DHCP client id, journal); no root password: the
    # box is run from its web pages, and nobody logs in with a password left in an image.
    echo uninitialized >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
    in_root 60 passwd --lock root

    # The boot partition's contents, gathered in /boot/firmware of the tree and moved out below.
    local firmware="$root/boot/firmware" efi consoles
    mkdir -p "$firmware/EFI/BOOT" "$firmware/loader/entries"
    case $arch in
        amd64) efi=x64 consoles="console=tty1 console=ttyS0,115200n8" ;;
        arm64) efi=aa64 consoles="console=tty1 console=ttyAMA0,115200n8" ;;
    esac
    cp "$root/usr/lib/systemd/boot/efi/systemd-boot$efi.efi" "$firmware/EFI/BOOT/BOOT${efi^^}.EFI"
    cp "$image_dir/loader/loader.conf" "$firmware/loader/loader.conf"
    subst "$image_dir/loader/entries/classbox.conf.in" "ROOT_PARTUUID=$root_partuuid" "CONSOLES=$consoles" \
        >"$firmware/loader/entries/classbox.conf"
    cp "$image_dir/classbox.toml" "$firmware/classbox.toml"
    if [ "$arch" = arm64 ]; then
        # raspi-firmware writes config.txt, cmdline.txt, the kernel, initrd and device trees for the Pi.
        cat >>"$root/etc/default/raspi-firmware" <<EOF

# classbox image: the root is found by partition id; boot messages on the screen (the last console).
ROOTPART=PARTUUID=$root_partuuid
CONSOLES="ttyS1,115200 tty0"
EOF
        in_root 600 env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware
    fi
    in_root 300 /etc/kernel/postinst.d/zz-classbox-boot
    local kernel initrd
    kernel=$(awk '$1 == "linux" { print $2 }' "$firmware/loader/entries/classbox.conf")
    initrd=$(awk '$1 == "initrd" { print $2 }' "$firmware/loader/entries/classbox.conf")
    if [ ! -s "$firmware$kernel" ] || [ ! -s "$firmware$initrd" ]; then
        echo "the boot loader entry names a kernel ($kernel) or initrd ($initrd) that is not there" >&2
        exit 1
    fi

    in_root 300 apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/root/.cache "$root"/tmp/* "$root"/var/tmp/*
    find "$root/var/log" -type f -delete
}

collect_partitions() {
    step "collect the boot and data partitions' contents"
    mkdir -p "$work/boot" "$work/data" "$root/var/lib/classbox"
    # The data partition starts with whatever install.sh put into /var/lib/classbox.
    find "$root/boot/firmware" -mindepth 1 -maxdepth 1 -exec mv -t "$work/boot" {} +
    find "$root/var/lib/classbox" -mindepth 1 -maxdepth 1 -exec mv -t "$work/data" {} +
    local uid gid
    uid=$(awk -F: '$1 == "classbox" { print $3 }' "$root/etc/passwd")
    gid=$(awk -F: '$1 == "classbox" { print $4 }' "$root/etc/passwd")
    chown "$uid:$gid" "$work/data"
    chmod 0750 "$work/data"
    data_owner="$uid:$gid"
}

assemble() {
    step "make the file systems (mkfs.vfat + mcopy, mkfs.ext4 -d) and the disk image (sfdisk, dd)"
    # A Pi's partition also holds its firmware and raspi-firmware's copy of each kernel: more room.
    local boot_mib=256 first_mib=4 data_mib=$data_size used
    [ "$arch" = amd64 ] || boot_mib=512
    used=$(du -s --block-size=1M -x "$root" | cut -f1)
    root_used=$used
    root_mib=${root_size:-$(( used * 3 / 2 > used + 512 ? used * 3 / 2 : used + 512 ))}
    root_mib=$(( (root_mib + 3) / 4 * 4 ))
    [ "$root_mib" -gt "$used" ] || { echo "--root-size $root_mib MiB is less than the $used MiB it holds" >&2; exit 1; }

    rm -f "$work/boot.img"
    logged mkfs.vfat -F 32 -n CLASSBOX -i "$boot_volid" -C "$work/boot.img" $((boot_mib * 1024))
    logged env MTOOLS_SKIP_CHECK=1 mcopy -s -Q -i "$work/boot.img" "$work/boot"/* ::/
    truncate -s 0 "$work/root.img" "$work/data.img"
    truncate -s "${root_mib}M" "$work/root.img"
    truncate -s "${data_mib}M" "$work/data.img"
    logged timeout 1200 mkfs.ext4 -q -F -L CLASSBOX-ROOT -E root_owner=0:0 -d "$root" "$work/root.img"
    logged timeout 600 mkfs.ext4 -q -F -L CLASSBOX-DATA -m 1 -E "root_owner=$data_owner" -d "$work/data" \
        "$work/data.img"
    logged debugfs -w -R "set_inode_field / mode 040750" "$work/data.img"  # StateDirectoryMode=

    local s=2048  # sectors per MiB
    local p1=$first_mib p2=$((first_mib + boot_mib)) p3=$((first_mib + boot_mib + root_mib))
    local total=$((p3 + data_mib + 1))
    local table
    case $arch in
        amd64) table="label: gpt
label-id: $disk_id
unit: sectors
start=$((p1 * s)), size=$((boot_mib * s)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$boot_partuuid, name=\"CLASSBOX\"
start=$((p2 * s)), size=$((root_mib * s)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_partuuid, name=\"CLASSBOX-ROOT\"
start=$((p3 * s)), size=$((data_mib * s)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$data_partuuid, name=\"CLASSBOX-DATA\"" ;;
        arm64) table="label: dos
label-id: 0x$disk_id
unit: sectors
start=$((p1 * s)), size=$((boot_mib * s)), type=c, bootable
start=$((p2 * s)), size=$((root_mib * s)), type=83
start=$((p3 * s)), size=$((data_mib * s)), type=83" ;;
    esac
    rm -f "$out.partial"
    truncate -s "${total}M" "$out.partial"
    printf '%s\n' "$table" | logged sfdisk --no-reread --no-tell-kernel "$out.partial"
    local part at
    for part in boot:$p1 root:$p2 data:$p3; do
        at=${part#*:}
        logged dd if="$work/${part%%:*}.img" of="$out.partial" bs=1M seek="$at" conv=notrunc,sparse status=none
    done
    mv "$out.partial" "$out"
    image_mib=$total
}

new_ids() {
    # Partition ids are fixed at build time: fstab and the boot loader name the partitions by them.
    boot_volid=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
    case $arch in
        amd64)
            disk_id=$(cat /proc/sys/kernel/random/uuid)
            boot_partuuid=$(cat /proc/sys/kernel/random/uuid)
            root_partuuid=$(cat /proc/sys/kernel/random/uuid)
            data_partuuid=$(cat /proc/sys/kernel/random/uuid) ;;
        arm64)
            disk_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
            boot_partuuid=$disk_id-01 root_partuuid=$disk_id-02 data_partuuid=$disk_id-03 ;;
    esac
}

step "build a classbox image for $arch into $out (log: $log)"
host_tools
[ ! -d "$work" ] || remove_work
mkdir -p "$root"
if [ "$refresh_base" -eq 1 ] || [ ! -f "$base_tar" ]; then
    build_base
else
    step "base system from the cache: $base_tar"
    logged tar --numeric-owner --xattrs --xattrs-include='*' -C "$root" -xpf "$base_tar"
fi
ensure_dev_nodes
with_network_and_no_daemons
mount_chroot
install_classbox
new_ids
configure
without_build_helpers
umount_chroot
collect_partitions
assemble
step "done: $out, $image_mib MiB ($(du -s --block-size=1M "$out" | cut -f1) MiB allocated; root partition $root_mib MiB holding $root_used MiB)"
echo "write it to a card: dd if=$out of=/dev/sdX bs=4M conv=fsync status=progress (see the README)"
