"""USB export and import between boxes, a drive pulled mid-copy, and scrub."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from classbox import channel, keys
from classbox.box import Box
from classbox.cli import main
from classbox.config import Config
from classbox.sync.engine import Progress
from classbox.sync.sources import open_source
from classbox.usb import export

from .conftest import Publisher, write_source
from .test_sync import assert_only_playable


@pytest.fixture
def full_box(tmp_path: Path, publisher: Publisher) -> Path:
    """Return the data directory of a box holding a three-lesson channel."""
    channel.build(write_source(tmp_path / "src", lessons=3), keys.load_private(publisher.private), tmp_path / "m")
    with Box(Config.from_env({}, data_dir=tmp_path / "a", demo=False)) as box:
        box.add_channel(tmp_path / "m", keys.load_public(publisher.public))
    return tmp_path / "a"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_export_then_import_into_another_box(tmp_path: Path, full_box: Path, publisher: Publisher) -> None:
    drive = tmp_path / "drive"
    drive.mkdir()
    code, out, err = run("usb", "export", str(drive), "--data", str(full_box))
    assert code == 0, err
    assert "exported test" in out and (drive / "classbox" / "channels" / "test" / "manifest.json").is_file()
    code, out, err = run("usb", "import", str(drive), "--channel", "test", "--trust", str(publisher.public),
                         "--data", str(tmp_path / "b"))
    assert code == 0, err
    with Box(Config.from_env({}, data_dir=tmp_path / "b", demo=False)) as box:
        assert len(box.catalog) == 3
    code, out, err = run("usb", "import", str(drive), "--data", str(tmp_path / "b"))
    assert code == 0 and "up to date" in out, err


def test_export_resumes_where_it_stopped(tmp_path: Path, full_box: Path) -> None:
    from classbox.datadir import DataDir
    from classbox.store import Store

    store = Store(DataDir(full_box))
    drive = tmp_path / "drive"

    class Pulled(Exception):
        pass

    def pull(done: int, total: int) -> None:
        if done > total // 2:
            raise Pulled

    with pytest.raises(Pulled):
        export(store, drive, None, pull)
    assert not (drive / "classbox" / "channels").exists(), "no manifest before all its files are written"
    result = export(store, drive, None)
    assert result.files_present > 0 and result.files_written > 0


def test_export_names_unknown_channel(tmp_path: Path, full_box: Path) -> None:
    code, _out, err = run("usb", "export", str(tmp_path), "--channel", "nope", "--data", str(full_box))
    assert code == 1 and "does not hold channel nope" in err


def test_import_from_empty_drive_says_so(tmp_path: Path) -> None:
    code, _out, err = run("usb", "import", str(tmp_path), "--data", str(tmp_path / "b"))
    assert code == 1 and "holds no channel" in err


def test_drive_pulled_mid_import(tmp_path: Path, full_box: Path, publisher: Publisher) -> None:
    drive = tmp_path / "drive"
    with Box(Config.from_env({}, data_dir=full_box, demo=False)) as a:
        export(a.store, drive)
    saved = tmp_path / "saved"
    shutil.copytree(drive, saved)
    with Box(Config.from_env({}, data_dir=tmp_path / "b", demo=False)) as box:
        def pull(p: Progress) -> None:
            if p.done > 0 and (drive / "classbox" / "blobs").exists():
                shutil.rmtree(drive / "classbox" / "blobs")

        result = box.bring_in(open_source(drive), "test", keys.load_public(publisher.public), on_progress=pull)
        assert result.errors and result.missing_lessons
        assert assert_only_playable(box) < 3
        for path in box.data.blobs.rglob("*"):
            if path.is_file():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
        shutil.rmtree(drive)
        shutil.copytree(saved, drive)  # plugged in again
        again = box.bring_in(open_source(drive), "test")
        assert not again.missing_lessons and len(box.catalog) == 3


def test_scrub_quarantines_damage_and_sync_restores(tmp_path: Path, full_box: Path, publisher: Publisher) -> None:
    with Box(Config.from_env({}, data_dir=full_box, demo=False)) as box:
        video = box.catalog.lesson("test-lesson-1").lesson.assets[0].blob  # type: ignore[union-attr]
        path = box.store.path(video.sha256)
        data = bytearray(path.read_bytes())
        data[10] ^= 1
        path.chmod(0o644)
        path.write_bytes(bytes(data))
    code, out, _err = run("scrub", "--data", str(full_box))
    assert code == 1 and video.sha256 in out
    with Box(Config.from_env({}, data_dir=full_box, demo=False)) as box:
        assert box.catalog.lesson("test-lesson-1") is None, "a lesson with a damaged file is not shown"
        assert len(box.catalog) == 2
        assert [p.name.split(".")[0] for p in box.data.quarantine.iterdir()] == [video.sha256]
        result = box.bring_in(open_source(tmp_path / "m"), "test")
        assert result.blobs_fetched == 1 and len(box.catalog) == 3
    code, out, _err = run("scrub", "--data", str(full_box))
    assert code == 0 and "intact" in out


def test_status_notices_a_drive_and_background_scrub_finds_damage(tmp_path: Path, full_box: Path) -> None:
    import time

    from classbox.web import build_app

    media = tmp_path / "media"
    with Box(Config.from_env({}, data_dir=full_box, demo=False)) as a:
        export(a.store, media / "usb0")
        video = a.catalog.lesson("test-lesson-0").lesson.assets[0].blob  # type: ignore[union-attr]
    config = Config.from_env({}, data_dir=tmp_path / "b", demo=False, usb_roots=str(media), scrub_interval=1,
                             scrub_rate="100M")
    app = build_app(config)
    box: Box = app.extensions["classbox"]
    worker = app.extensions["classbox_sync"]
    client = app.test_client()
    try:
        usb = client.get("/api/v1/sync").get_json()["usb"]
        assert [d["message"] for d in usb] == [f"USB found: 1 channels, 3 lessons new ({media / 'usb0'})"]
        box.bring_in(open_source(media / "usb0"), "test", keys.load_public(tmp_path / "keys" / "publisher.pub"))
        assert client.get("/api/v1/sync").get_json()["usb"][0]["new_lessons"] == 0
        path = box.store.path(video.sha256)
        path.write_bytes(b"rot" + path.read_bytes()[3:])
        worker.start()
        deadline = time.monotonic() + 15
        while box.catalog.lesson("test-lesson-0") is not None:
            assert time.monotonic() < deadline, "the background scrub should have found the damage"
            time.sleep(0.1)
        assert client.get("/api/v1/sync").get_json()["scrub"]["damaged"] == [video.sha256]
        assert len(box.catalog) == 2
    finally:
        worker.stop()
        box.close()
