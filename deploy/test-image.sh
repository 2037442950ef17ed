#!/usr/bin/env bash
# Boot a classbox disk image in QEMU and check that the box answers on /-/health, then power it off.
# Slow (minutes under software emulation), so not part of deploy/test.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh disable=SC1091
. "$here/lib.sh"  # apt_install

usage() {
    cat <<'EOF'
usage: deploy/test-image.sh [--arch amd64|arm64] [--image FILE] [--timeout SECONDS]
                            [--accel tcg|kvm|auto] [--smp N] [--grow MIB] [--log FILE]

Boots a copy of FILE (default build/classbox-bookworm-ARCH.img, from deploy/build-image.sh) in
QEMU: UEFI (OVMF for amd64 on a q35 PC; AAVMF for arm64 on the "virt" board with a Cortex-A72),
no screen, user networking with the box's port 8080 forwarded to a free port on 127.0.0.1, the
guest cut off from every other network, the serial console written to the log. First it fills in
school and box_name in the copy's classbox.toml, as a technician would.
Waits for GET /-/health to answer 200 with JSON, checks that the data partition grew into the
space added to the copy, that /setup shows the school and that no unit failed at boot, presses
the power button, and waits for the box to power off.
Exits 0 when all of that happened; otherwise non-zero, with the end of the console log.

options:
  --arch ARCH        amd64 (default) or arm64
  --image FILE       the image to boot (a copy is booted; FILE is not changed)
  --timeout SECONDS  longest wait for the health check after QEMU starts (default 900)
  --accel ACCEL      tcg: software emulation (default); kvm: hardware; auto: kvm when usable
  --smp N            virtual CPUs (default 1: the machine is shared)
  --grow MIB         space added at the end of the copy, which the box must take (default 1024)
  --log FILE         serial console log (default build/test-image-ARCH.console.log)

Needs: Debian packages qemu-system-x86 and ovmf (amd64) or qemu-system-arm and qemu-efi-aarch64
(arm64), mtools, fdisk, python3 (installed when missing; root for that); access to /dev/kvm for kvm.
EOF
}

arch=amd64 image="" timeout_s=900 accel=tcg smp=1 grow=1024 log=""
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --arch|--image|--timeout|--accel|--smp|--grow|--log)
            [ $# -ge 2 ] || { echo "$1 needs a value (see --help)" >&2; exit 2; }
            case $1 in
                --arch) arch=$2 ;; --image) image=$2 ;; --timeout) timeout_s=$2 ;; --accel) accel=$2 ;;
                --smp) smp=$2 ;; --grow) grow=$2 ;; --log) log=$2 ;;
            esac
            shift 2 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $arch in amd64|arm64) ;; *) echo "--arch must be amd64 or arm64, not $arch" >&2; exit 2 ;; esac
image=${image:-$top/build/classbox-bookworm-$arch.img}
log=${log:-$top/build/test-image-$arch.console.log}
for n in "$timeout_s" "$smp" "$grow"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "not a whole number: $n" >&2; exit 2; }
done
[ -f "$image" ] || { echo "no image $image: build it with deploy/build-image.sh" >&2; exit 2; }
case $accel in
    tcg|kvm) ;;
    auto) if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi ;;
    *) echo "--accel must be tcg, kvm or auto, not $accel" >&2; exit 2 ;;
esac

case $arch in
    amd64)
        qemu=qemu-system-x86_64 firmware=/usr/share/OVMF/OVMF_CODE_4M.fd vars_template=/usr/share/OVMF/OVMF_VARS_4M.fd
        machine=(-machine q35)
        apt_install "$qemu:qemu-system-x86" "$firmware:ovmf" ;;
    arm64)
        qemu=qemu-system-aarch64 firmware=/usr/share/AAVMF/AAVMF_CODE.fd vars_template=/usr/share/AAVMF/AAVMF_VARS.fd
        machine=(-machine virt -cpu cortex-a72)
        apt_install "$qemu:qemu-system-arm" "$firmware:qemu-efi-aarch64" ;;
esac
apt_install python3:python3 mcopy:mtools sfdisk:fdisk
mkdir -p "$(dirname "$log")"
: >"$log"

tmp=$(mktemp -d)
qemu_pid=""
cleanup() {
    local rc=$?
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        sleep 2
        kill -9 "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "test-image: FAIL: $*" >&2
    echo "--- last lines of the console log ($log) ---" >&2
    tail -n 60 "$log" | tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >&2
    exit 1
}

# The box writes to its disk (and grows its data partition into the added space): boot a copy.
partition() {
    # partition N start|size: where partition N of the image starts, or its size, in bytes.
    sfdisk -d "$image" | grep 'start=' | sed -n "${1}p" | sed -E "s/.*$2= *([0-9]+).*/\1/" | awk '{ print $1 * 512 }'
}
data_before=$(partition 3 size)
cp --sparse=always "$image" "$tmp/disk.img"
truncate -s "+${grow}M" "$tmp/disk.img"
cp "$vars_template" "$tmp/vars.fd"

# Provision the copy as a technician would: fill in school and box_name in the shipped example.
school="test-image 测试学校 $$"
boot_at=$(partition 1 start)
export MTOOLS_SKIP_CHECK=1
mtype -i "$tmp/disk.img@@$boot_at" ::/classbox.toml >"$tmp/example.toml" ||
    fail "no classbox.toml on the image's boot partition"
sed -e "s/^#school = .*/school = \"$school\"/" -e 's/^#box_name = .*/box_name = "test-image"/' \
    "$tmp/example.toml" >"$tmp/classbox.toml"
[ "$(grep -c -E '^(school|box_name) = ' "$tmp/classbox.toml")" -eq 2 ] ||
    fail "the example classbox.toml has no '#school = ' and '#box_name = ' lines to fill in"
mcopy -o -i "$tmp/disk.img@@$boot_at" "$tmp/classbox.toml" ::/classbox.toml
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

echo "test-image: booting $image ($arch, $accel, $smp CPU, 1 GiB) with the box's port 8080 at 127.0.0.1:$port"
echo "test-image: console log: $log"
start=$SECONDS
# restrict=on: the guest reaches nothing (no internet, not the host); only the forwarded port is open.
"$qemu" "${machine[@]}" -accel "$accel" -smp "$smp" -m 1024 -nographic -no-reboot \
    -drive if=pflash,format=raw,readonly=on,file="$firmware" \
    -drive if=pflash,format=raw,file="$tmp/vars.fd" \
    -drive if=virtio,format=raw,file="$tmp/disk.img" \
    -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:8080" \
    -device virtio-net-pci,netdev=net0 \
    -serial "file:$log" -monitor "unix:$tmp/monitor.sock,server,nowait" \
    </dev/null >"$tmp/qemu.out" 2>&1 &
qemu_pid=$!

health() {
    # Print the health report and succeed if /-/health answers 200 with a JSON object.
    python3 - "$port" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/-/health", timeout=10) as r:
        body = r.read()
        ok = r.status == 200 and r.headers.get_content_type() == "application/json"
    report = json.loads(body)
except (OSError, ValueError):
    sys.exit(1)
if not ok or not isinstance(report, dict):
    sys.exit(1)
print(json.dumps(report))
EOF
}

report=""
while [ $((SECONDS - start)) -lt "$timeout_s" ]; do
    kill -0 "$qemu_pid" 2>/dev/null || { cat "$tmp/qemu.out" >&2; qemu_pid=""; fail "QEMU stopped before the box answered"; }
    if report=$(health); then break; fi
    report=""
    sleep 5
done
[ -n "$report" ] || fail "no answer from /-/health within ${timeout_s}s"
boot_s=$((SECONDS - start))
echo "test-image: /-/health answered 200 after ${boot_s}s: $report"

data_after=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["disk_total_bytes"])' "$report")
echo "test-image: data partition $((data_before / 1048576)) MiB in the image, file system $((data_after / 1048576)) MiB on the box"
[ "$data_after" -gt $((data_before + grow * 1048576 / 2)) ] ||
    fail "the data partition did not grow into the ${grow} MiB added to the disk"

# The box read the provisioning file from /boot/firmware: /setup comes pre-filled with the school.
python3 - "$port" "$school" <<'EOF' || fail "/setup does not show the school from classbox.toml"
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/setup", timeout=30) as r:
    page = r.read().decode()
sys.exit(0 if r.status == 200 and sys.argv[2] in page and "有误" not in page else 1)
EOF
echo "test-image: /setup is pre-filled from /boot/firmware/classbox.toml (school \"$school\")"

failed=$(tr -d '\r' <"$log" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | grep -E '\[FAILED\]' || true)
[ -z "$failed" ] || fail "units failed during boot:
$failed"

echo "test-image: pressing the power button"
off_start=$SECONDS
python3 - "$tmp/monitor.sock" <<'EOF' || fail "could not press the power button through QEMU's monitor"
import socket, sys
# The monitor drops a command whose connection closes before it is read: wait for the prompts.
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
def until_prompt():
    seen = b""
    while not seen.rstrip().endswith(b"(qemu)"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("the monitor closed")
        seen += chunk
until_prompt()
s.sendall(b"system_powerdown\n")
until_prompt()
s.close()
EOF
while kill -0 "$qemu_pid" 2>/dev/null && [ $((SECONDS - off_start)) -lt 300 ]; do sleep 2; done
if kill -0 "$qemu_pid" 2>/dev/null; then
    fail "the box did not power off within 300 s of the power button"
fi
wait "$qemu_pid" || true
qemu_pid=""
grep -q "reboot: Power down" "$log" || fail "QEMU stopped, but the console shows no clean power-off"
echo "test-image: PASS: healthy ${boot_s}s after power-on, powered off cleanly in $((SECONDS - off_start))s"
