"""The quota, the free margin and eviction: what a full box gives up to make room, and what it never does."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest

from classbox import box as box_module
from classbox import channel, keys
from classbox.box import Box
from classbox.config import Config
from classbox.errors import ConfigError, NotFound
from classbox.sync.sources import open_source

from .conftest import Publisher, write_source


def tomorrow() -> str:
    return (datetime.date.today() + datetime.timedelta(days=1)).isoformat()


def build(tmp_path: Path, publisher: Publisher, channel_id: str, lessons: int, schedule: list[dict] | None = None,
          name: str | None = None, after: Path | None = None) -> Path:
    """Build a signed channel whose files differ from every other channel's; return its mirror root.

    With `after`, the build is the next version of the channel at that mirror.
    """
    src = write_source(tmp_path / f"src-{name or channel_id}", channel_id, lessons=lessons)
    for video in src.glob("lesson*/video.mp4"):
        video.write_bytes(video.read_bytes() + channel_id.encode() * 2000)
    info = json.loads((src / "channel.json").read_text(encoding="utf-8"))
    info["schedule"] = schedule or []
    (src / "channel.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / f"mirror-{name or channel_id}"
    if after is not None:
        shutil.copytree(after, out)
    channel.build(src, keys.load_private(publisher.private), out)
    return out


def open_box(path: Path, quota: int | None = None) -> Box:
    return Box(Config.from_env({}, data_dir=path, demo=False, free_margin=0,
                               quota=str(quota) if quota is not None else None))


def listed(box: Box) -> list[str]:
    return sorted(e.lesson.id for e in box.catalog.browse({}).entries)


def lesson_files(box: Box, lesson_id: str) -> list[str]:
    entry = box.catalog.lesson(lesson_id)
    assert entry is not None, lesson_id
    return [b.sha256 for b in entry.lesson.blobs()]


def size_of(mirror: Path) -> int:
    return sum(p.stat().st_size for p in (mirror / "blobs").rglob("*") if p.is_file())


@pytest.fixture
def full_box(tmp_path: Path, publisher: Publisher) -> Path:
    """A box holding channel a (4 lessons) whose lessons were last played at 1000, 3000 and 2000; lesson 3 never."""
    data = tmp_path / "box"
    with open_box(data) as box:
        box.add_channel(build(tmp_path, publisher, "a", 4), keys.load_public(publisher.public))
        for lesson, at in (("a-lesson-0", 1000.0), ("a-lesson-1", 3000.0), ("a-lesson-2", 2000.0)):
            box.note_played(lesson_files(box, lesson)[0], now=at)  # the video, as a TV fetches it
    return data


def test_scheduled_lesson_evicts_the_least_recently_played(tmp_path: Path, publisher: Publisher,
                                                            full_box: Path) -> None:
    b = build(tmp_path, publisher, "b", 1, [{"lesson": "b-lesson-0", "date": tomorrow(), "period": 1}])
    with open_box(full_box) as box:
        used = sum(size for size, _ in box.store.usage().values())
        box.pin("a-lesson-3")  # never played, so first in line, but pinned
    with open_box(full_box, quota=used + size_of(b) - 10_000) as box:
        result = box.bring_in(open_source(b), "b", keys.load_public(publisher.public))
        assert not result.errors and not result.missing_lessons
        assert listed(box) == ["a-lesson-1", "a-lesson-2", "a-lesson-3", "b-lesson-0"]
        assert sum(size for size, _ in box.store.usage().values()) <= used + size_of(b) - 10_000


def test_subscribed_lesson_never_pushes_out_another(tmp_path: Path, publisher: Publisher, full_box: Path) -> None:
    c = build(tmp_path, publisher, "c", 1)
    with open_box(full_box) as box:
        used = sum(size for size, _ in box.store.usage().values())
        before = sorted(box.store.blobs())
    with open_box(full_box, quota=used + size_of(c) - 10_000) as box:
        result = box.bring_in(open_source(c), "c", keys.load_public(publisher.public))
        assert any("will not fit" in e and "天地人" in e and "quota" in e for e in result.errors), result.errors
        assert sorted(box.store.blobs()) == before, "nothing was deleted"
        assert listed(box) == ["a-lesson-0", "a-lesson-1", "a-lesson-2", "a-lesson-3"]


def test_nothing_is_deleted_when_deleting_would_not_be_enough(tmp_path: Path, publisher: Publisher,
                                                              full_box: Path) -> None:
    b = build(tmp_path, publisher, "b", 1, [{"lesson": "b-lesson-0", "date": tomorrow(), "period": 1}])
    with open_box(full_box) as box:
        used = sum(size for size, _ in box.store.usage().values())
        before = sorted(box.store.blobs())
        for lesson in ("a-lesson-0", "a-lesson-1", "a-lesson-2"):
            box.pin(lesson)
    with open_box(full_box, quota=used + size_of(b) - 30_000) as box:  # more than lesson 3 alone frees
        result = box.bring_in(open_source(b), "b", keys.load_public(publisher.public))
        assert any("will not fit" in e for e in result.errors), result.errors
        assert result.missing_lessons == ("天地人",)
        assert sorted(box.store.blobs()) == before
        assert "b-lesson-0" not in listed(box)


def test_dropped_lesson_keeps_its_files_while_scheduled(tmp_path: Path, publisher: Publisher,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "box"
    v1 = build(tmp_path, publisher, "a", 2, [{"lesson": "a-lesson-1", "date": tomorrow(), "period": 2}], name="v1")
    v2 = build(tmp_path, publisher, "a", 1, name="v2", after=v1)  # lesson 1 and its schedule entry are gone
    b = build(tmp_path, publisher, "b", 1, [{"lesson": "b-lesson-0", "date": tomorrow(), "period": 1}])
    with open_box(data) as box:
        box.add_channel(v1, keys.load_public(publisher.public))
        dropped = lesson_files(box, "a-lesson-1")
        assert box.bring_in(open_source(v2), "a").activated
        assert listed(box) == ["a-lesson-0"]
        box.pin("a-lesson-0")  # so that only the dropped lesson's files could make room
        used = sum(size for size, _ in box.store.usage().values())
    with open_box(data, quota=used + size_of(b) - 10_000) as box:
        result = box.bring_in(open_source(b), "b", keys.load_public(publisher.public))
        assert any("will not fit" in e for e in result.errors), result.errors
        assert all(box.store.has(sha) for sha in dropped), "still scheduled: kept"
    day_after = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    monkeypatch.setattr(box_module, "_today", lambda: day_after)
    with open_box(data, quota=used + size_of(b) - 10_000) as box:
        result = box.bring_in(open_source(b), "b")
        assert not result.errors, result.errors
        assert not all(box.store.has(sha) for sha in dropped), "its day has passed: its files made the room"
        assert listed(box) == ["a-lesson-0", "b-lesson-0"]


def test_pin_names_an_unknown_lesson(tmp_path: Path) -> None:
    with open_box(tmp_path / "box") as box, pytest.raises(NotFound, match="no-such-lesson"):
        box.pin("no-such-lesson")


def test_quota_setting_is_checked() -> None:
    assert Config.from_env({"CLASSBOX_QUOTA": "20G"}).quota_bytes == 20 * 1024**3
    with pytest.raises(ConfigError, match="CLASSBOX_QUOTA"):
        Config.from_env({"CLASSBOX_QUOTA": "lots"})
