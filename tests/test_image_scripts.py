"""deploy/build-image.sh and deploy/test-image.sh: their interface and the files the image ships.

Building and booting an image takes minutes and root, so it is not run here: run
`deploy/build-image.sh && deploy/test-image.sh` (see the README).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from classbox.accounts import hash_password, verify_password
from classbox.setup import FIELDS, read_provision

TOP = Path(__file__).resolve().parent.parent
BUILD = TOP / "deploy" / "build-image.sh"
TEST = TOP / "deploy" / "test-image.sh"
EXAMPLE = TOP / "deploy" / "image" / "classbox.toml"
SHELL_FILES = [BUILD, TEST, TOP / "deploy" / "image" / "rootfs" / "usr" / "local" / "sbin" / "classbox-grow-data",
               TOP / "deploy" / "image" / "rootfs" / "etc" / "kernel" / "postinst.d" / "zz-classbox-boot"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, cwd=TOP)


@pytest.mark.parametrize("script", [BUILD, TEST], ids=lambda p: p.name)
def test_help_says_what_the_script_needs(script: Path) -> None:
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: deploy/{script.name}")
    assert "Needs:" in result.stdout


def test_build_refuses_bad_arguments_before_touching_anything() -> None:
    for args, message in ((["--arch", "riscv64"], "--arch must be amd64 or arm64"),
                          (["--data-size", "10"], "at least 64"),
                          (["--out"], "--out needs a value"),
                          (["--frobnicate"], "unknown argument")):
        result = run(BUILD, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr


def test_image_test_refuses_bad_arguments(tmp_path: Path) -> None:
    image = tmp_path / "x.img"
    image.write_bytes(b"")
    for args, message in ((["--accel", "hvf"], "--accel must be tcg, kvm or auto"),
                          (["--timeout", "soon"], "not a whole number"),
                          (["--image", tmp_path / "missing.img"], "no image")):
        result = run(TEST, "--image", image, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck (apt-get install shellcheck)")
def test_scripts_are_shellcheck_clean() -> None:
    result = run("shellcheck", "-x", *SHELL_FILES)
    assert result.returncode == 0, result.stdout


def test_example_provisioning_file_does_nothing_until_filled_in() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert tomllib.loads(text) == {}
    assert "\ufeff" not in text


def test_example_provisioning_file_is_valid_once_its_lines_are_uncommented(tmp_path: Path) -> None:
    # What a technician does: remove the "#" before each setting and put in the school's values.
    password_hash = hash_password("a good long password")
    lines = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"#(\w+) = .*", line)
        if match:
            line = line[1:]
            if match.group(1) == "admin_password_hash":
                line = f'admin_password_hash = "{password_hash}"'
        lines.append(line)
    filled = tmp_path / "classbox.toml"
    filled.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")  # as Windows Notepad saves it

    provision = read_provision(filled)

    assert provision is not None
    assert set(tomllib.loads(filled.read_text(encoding="utf-8"))) == {*FIELDS, "admin_password_hash"}
    assert provision.settings.school and provision.settings.box_name
    assert provision.settings.timezone == "Asia/Shanghai"
    assert provision.settings.hub_key.startswith("ed25519:")
    assert provision.password_hash is not None
    assert verify_password("a good long password", provision.password_hash)
