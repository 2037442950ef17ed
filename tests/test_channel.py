"""Building, verifying and installing channels; every rejection changes nothing on disk."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from classbox import channel, keys
from classbox.box import Box
from classbox.cli import main
from classbox.errors import BuildError, ChannelRejected

from .conftest import Publisher, write_source


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Return every file under root (but the lock) with its mode and content hash."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames + files:
            p = Path(dirpath) / name
            if name == "lock":
                continue
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else "dir"
            out[str(p.relative_to(root))] = (st.st_mode, digest)
    return out


@pytest.fixture
def built(tmp_path: Path, publisher: Publisher) -> Path:
    """Build a two-lesson channel into a mirror folder; return the mirror root."""
    src = write_source(tmp_path / "src")
    channel.build(src, keys.load_private(publisher.private), tmp_path / "mirror")
    return tmp_path / "mirror"


def manifest_path(root: Path, channel_id: str = "test") -> Path:
    return root / "channels" / channel_id / channel.MANIFEST


def resign(root: Path, key_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Edit a mirror's manifest document and sign it again with the given key."""
    path = manifest_path(root)
    doc = json.loads(path.read_bytes())
    edit(doc)
    data = channel.encode_manifest(doc)
    path.write_bytes(data)
    path.with_name(channel.SIGNATURE).write_bytes(keys.sign(keys.load_private(key_path), data))


def reject(box: Box, root: Path, key, reason: str) -> ChannelRejected:  # type: ignore[no-untyped-def]
    """Try to install, expect the rejection reason, and check the box is byte-for-byte unchanged."""
    before = snapshot(box.data.root)
    with pytest.raises(ChannelRejected) as info:
        box.add_channel(root, key)
    assert info.value.reason == reason, str(info.value)
    assert snapshot(box.data.root) == before, "a rejected channel changed the box"
    return info.value


# ---------------------------------------------------------------- build


def test_build_writes_mirror_layout_and_signs(built: Path, publisher: Publisher) -> None:
    m = channel.verify(built, None, keys.load_public(publisher.public), 16 << 20)
    assert m.id == "test" and len(m.lessons) == 2
    video = m.lessons[0].assets[0]
    assert video.role == "video" and video.blob.media_type == "video/mp4"
    assert video.pause_points[0].prompt == "请同学们读一读"
    assert len(m.lessons[0].assets[1].pages) == 2
    for blob in m.blobs().values():
        path = built / "blobs" / "sha256" / blob.sha256[:2] / blob.sha256
        assert hashlib.sha256(path.read_bytes()).hexdigest() == blob.sha256


def test_each_rebuild_increases_version(tmp_path: Path, built: Path, publisher: Publisher) -> None:
    first = json.loads(manifest_path(built).read_bytes())["version"]
    second = channel.build(tmp_path / "src", keys.load_private(publisher.private), built).version
    third = channel.build(tmp_path / "src", keys.load_private(publisher.private), built).version
    assert first < second < third


def test_build_refuses_file_outside_source(tmp_path: Path, publisher: Publisher) -> None:
    src = write_source(tmp_path / "src", lessons=1)
    (tmp_path / "secret.txt").write_text("not for the channel")
    lesson_file = src / "lesson0" / "lesson.json"
    doc = json.loads(lesson_file.read_text(encoding="utf-8"))
    doc["assets"][0]["file"] = "../../secret.txt"
    lesson_file.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BuildError, match="leads outside the source folder"):
        channel.build(src, keys.load_private(publisher.private), tmp_path / "out")
    assert not (tmp_path / "out" / "channels").exists()


def test_build_names_missing_field(tmp_path: Path, publisher: Publisher) -> None:
    src = write_source(tmp_path / "src", lessons=1)
    lesson_file = src / "lesson0" / "lesson.json"
    doc = json.loads(lesson_file.read_text(encoding="utf-8"))
    del doc["section"]
    lesson_file.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(BuildError, match=r"lesson0/lesson.json: field 'section' is missing"):
        channel.build(src, keys.load_private(publisher.private), tmp_path / "out")


def test_build_rejects_unknown_section(tmp_path: Path, publisher: Publisher) -> None:
    src = write_source(tmp_path / "src", lessons=1)
    lesson_file = src / "lesson0" / "lesson.json"
    doc = json.loads(lesson_file.read_text(encoding="utf-8"))
    doc["section"] = "体育"
    lesson_file.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BuildError, match="section '体育' is not one of"):
        channel.build(src, keys.load_private(publisher.private), tmp_path / "out")


# ---------------------------------------------------------------- install


def test_install_activates_and_lists_lessons(box: Box, built: Path, publisher: Publisher) -> None:
    result = box.add_channel(built, keys.load_public(publisher.public))
    assert result.blobs_fetched == len(result.manifest.blobs()) and result.activated
    assert len(box.catalog) == 2
    again = box.add_channel(built, None)  # the key is pinned now
    assert again.unchanged


def test_upgrade_copies_only_new_files(tmp_path: Path, box: Box, built: Path, publisher: Publisher) -> None:
    box.add_channel(built, keys.load_public(publisher.public))
    (tmp_path / "src" / "lesson1" / "p2.jpg").write_bytes(b"a corrected page")
    channel.build(tmp_path / "src", keys.load_private(publisher.private), built)
    result = box.add_channel(built, None)
    assert result.blobs_fetched == 1 and result.previous_version is not None


def test_reject_bad_signature(box: Box, built: Path, publisher: Publisher) -> None:
    path = manifest_path(built)
    path.write_bytes(path.read_bytes().replace("天地人".encode(), "地天人".encode()))
    reject(box, built, keys.load_public(publisher.public), "bad_signature")


def test_reject_missing_signature(box: Box, built: Path, publisher: Publisher) -> None:
    manifest_path(built).with_name(channel.SIGNATURE).unlink()
    reject(box, built, keys.load_public(publisher.public), "bad_signature")


def test_reject_unknown_key(tmp_path: Path, box: Box, built: Path) -> None:
    keys.generate(tmp_path / "other")
    reject(box, built, keys.load_public(tmp_path / "other" / keys.PUBLIC_NAME), "unknown_key")


def test_reject_key_other_than_pinned(tmp_path: Path, box: Box, built: Path, publisher: Publisher) -> None:
    box.add_channel(built, keys.load_public(publisher.public))
    keys.generate(tmp_path / "other")
    other = keys.load_public(tmp_path / "other" / keys.PUBLIC_NAME)
    resign(built, tmp_path / "other" / keys.PRIVATE_NAME,
           lambda d: d.update(version=d["version"] + 1, publisher=keys.key_id(other)))
    reject(box, built, other, "unknown_key")
    reject(box, built, None, "unknown_key")


def test_reject_lower_version(tmp_path: Path, box: Box, built: Path, publisher: Publisher) -> None:
    old = tmp_path / "old"
    os.rename(built, old)
    channel.build(tmp_path / "src", keys.load_private(publisher.private), tmp_path / "new",
                  now=time.time() + 10)
    box.add_channel(tmp_path / "new", keys.load_public(publisher.public))
    err = reject(box, old, None, "rollback")
    assert "older than the installed version" in str(err)


def test_reject_replay_of_same_version_with_other_content(box: Box, built: Path, publisher: Publisher) -> None:
    box.add_channel(built, keys.load_public(publisher.public))
    resign(built, publisher.private, lambda d: d.update(title="另一个频道"))
    reject(box, built, None, "rollback")


def test_reject_expired(tmp_path: Path, box: Box, publisher: Publisher) -> None:
    src = write_source(tmp_path / "src")
    channel.build(src, keys.load_private(publisher.private), tmp_path / "mirror",
                  now=time.time() - 3 * 86400, expires_days=1)
    err = reject(box, tmp_path / "mirror", keys.load_public(publisher.public), "expired")
    assert "expired at" in str(err)


def test_reject_manifest_over_16_mib(box: Box, built: Path, publisher: Publisher) -> None:
    resign(built, publisher.private, lambda d: d.update(description="长" * (6 << 20)))
    assert manifest_path(built).stat().st_size > 16 << 20
    reject(box, built, keys.load_public(publisher.public), "too_large")


def test_reject_blob_with_wrong_hash(box: Box, built: Path, publisher: Publisher) -> None:
    blob = json.loads(manifest_path(built).read_bytes())["lessons"][1]["assets"][0]
    path = built / "blobs" / "sha256" / blob["sha256"][:2] / blob["sha256"]
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    err = reject(box, built, keys.load_public(publisher.public), "blob_mismatch")
    assert "content hashes to" in str(err)
    assert not list(box.data.partial.iterdir()), "a staged copy was left behind"


def test_reject_blob_one_byte_longer(box: Box, built: Path, publisher: Publisher) -> None:
    blob = json.loads(manifest_path(built).read_bytes())["lessons"][0]["assets"][1]
    path = built / "blobs" / "sha256" / blob["sha256"][:2] / blob["sha256"]
    path.write_bytes(path.read_bytes() + b"!")
    err = reject(box, built, keys.load_public(publisher.public), "blob_mismatch")
    assert "longer than" in str(err)


def test_reject_missing_blob(box: Box, built: Path, publisher: Publisher) -> None:
    blob = json.loads(manifest_path(built).read_bytes())["lessons"][0]["assets"][1]["pages"][1]
    (built / "blobs" / "sha256" / blob["sha256"][:2] / blob["sha256"]).unlink()
    reject(box, built, keys.load_public(publisher.public), "blob_mismatch")


def test_reject_blob_link_leading_outside(tmp_path: Path, box: Box, built: Path, publisher: Publisher) -> None:
    blob = json.loads(manifest_path(built).read_bytes())["lessons"][0]["assets"][0]
    path = built / "blobs" / "sha256" / blob["sha256"][:2] / blob["sha256"]
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    reject(box, built, keys.load_public(publisher.public), "path_escape")


def test_reject_channel_folder_link_leading_outside(tmp_path: Path, box: Box, built: Path,
                                                   publisher: Publisher) -> None:
    real = tmp_path / "elsewhere"
    os.rename(built / "channels" / "test", real)
    (built / "channels" / "test").symlink_to(real)
    reject(box, built, keys.load_public(publisher.public), "path_escape")


def test_reject_unknown_field(box: Box, built: Path, publisher: Publisher) -> None:
    resign(built, publisher.private, lambda d: d["lessons"][0]["assets"][0].update(script="rm -rf /"))
    err = reject(box, built, keys.load_public(publisher.public), "invalid")
    assert "unknown field script" in str(err)


def test_reject_traversal_in_blob_name(box: Box, built: Path, publisher: Publisher) -> None:
    resign(built, publisher.private, lambda d: d["lessons"][0]["assets"][0].update(sha256="../../../etc/passwd"))
    err = reject(box, built, keys.load_public(publisher.public), "invalid")
    assert "sha256 must be 64 lower-case hex digits" in str(err)


# ---------------------------------------------------------------- the commands


def test_keygen_writes_private_key_0600(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["keygen", "--out", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k" / "publisher.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k" / "publisher.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    again = CliRunner().invoke(main, ["keygen", "--out", str(tmp_path / "k")])
    assert again.exit_code == 1 and "refusing to replace" in again.output


def test_commands_build_verify_add(tmp_path: Path, publisher: Publisher) -> None:
    src = write_source(tmp_path / "src")
    run = CliRunner().invoke
    r = run(main, ["channel", "build", str(src), "--key", str(publisher.private), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0 and "built channel test" in r.output, r.output
    r = run(main, ["channel", "verify", str(tmp_path / "m"), "--pubkey", str(publisher.public)])
    assert r.exit_code == 0 and "signature good" in r.output, r.output
    r = run(main, ["channel", "add", str(tmp_path / "m"), "--trust", str(publisher.public),
                   "--data", str(tmp_path / "box")])
    assert r.exit_code == 0 and "(new, active)" in r.output, r.output


def test_add_command_names_rejection(tmp_path: Path, built: Path) -> None:
    keys.generate(tmp_path / "other")
    r = CliRunner().invoke(main, ["channel", "add", str(built), "--trust", str(tmp_path / "other" / "publisher.pub"),
                                  "--data", str(tmp_path / "box")])
    assert r.exit_code == 1
    assert "rejected (unknown_key)" in r.output and "nothing was changed" in r.output
