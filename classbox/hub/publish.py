"""Publishing a teaching point's channel: its planned lessons and its plan, signed by the hub.

The channel `point-<box id>` is built into the hub's mirror (`<data>/hub/mirror/`), which the hub
serves at /hub/mirror and which may be copied to any static server. Files are hard-linked into
the build, never copied twice: the mirror keeps one copy of each file however often a lesson is
published.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .. import channel, storage
from ..box import Box
from ..channel import Manifest
from ..errors import BuildError, InvalidInput, NotFound
from ..store import is_sha256
from .lessons import SUFFIXES, HubLesson, Lessons
from .plans import Planned, Plans
from .points import TeachingPoint

KEEP_PAST_DAYS = 7  # lessons of the last week stay in the channel, so a class can catch up


def hub_dir(box: Box) -> Path:
    """Return the folder a hub keeps its own data in."""
    return box.data.root / "hub"


def mirror_root(box: Box) -> Path:
    """Return the hub's mirror: what /hub/mirror serves."""
    return hub_dir(box) / "mirror"


def file_path(box: Box, sha256: str) -> Path | None:
    """Return where the hub holds a file: an upload, or a blob of a channel it holds; None if nowhere."""
    if not is_sha256(sha256):  # a name from a request: "../../state.json" or "/etc/passwd" is no file of ours
        return None
    uploaded = hub_dir(box) / "files" / sha256
    if uploaded.is_file():
        return uploaded
    if box.store.has(sha256):
        return box.store.path(sha256)
    return None


@dataclass(frozen=True)
class Plan:
    """What publishing a point's channel would put in it."""

    entries: tuple[Planned, ...]
    lessons: tuple[HubLesson, ...]
    warnings: tuple[str, ...]


def prepare(box: Box, point: TeachingPoint, lessons: Lessons, plans: Plans, today: date,
            snapshot: dict[str, Any] | None = None) -> Plan:
    """Gather a point's planned lessons and say what is wrong before publishing: missing, empty, too big."""
    entries = tuple(plans.from_day(point.box_id, today - timedelta(days=KEEP_PAST_DAYS)))
    found: dict[str, HubLesson] = {}
    warnings = []
    for e in entries:
        if e.lesson in found:
            continue
        try:
            lesson = lessons.get(e.lesson)
        except NotFound:
            warnings.append(f"{e.date} 第{e.period}节: 课程 {e.lesson} 已不在中心校，发布时将跳过")
            continue
        if not lesson.assets:
            warnings.append(f"{e.date} 第{e.period}节: 《{lesson.title}》还没有文件，发布时将跳过")
            continue
        missing = [a.name for a in lesson.assets
                   if any(file_path(box, sha) is None for sha in (a.sha256, *(p.sha256 for p in a.pages)))]
        if missing:
            warnings.append(f"{e.date} 第{e.period}节: 《{lesson.title}》缺少文件 {', '.join(missing)}，发布时将跳过")
            continue
        found[lesson.id] = lesson
    if snapshot:
        free = snapshot.get("health", {}).get("disk_free_bytes")
        held = set(snapshot.get("held_lessons", []))
        needed = sum(lesson.size for lesson in found.values() if lesson.id not in held)
        if isinstance(free, int) and needed > free:
            warnings.append(f"教学点的盒子剩余 {free / 1e9:.1f} GB，这些课程还需要 {needed / 1e9:.1f} GB：放不下，"
                            "请减少课程，或请技术员清理盒子")
    kept = tuple(e for e in entries if e.lesson in found)
    return Plan(kept, tuple(found.values()), tuple(warnings))


def publish(box: Box, point: TeachingPoint, plan: Plan, title: str | None = None) -> Manifest:
    """Build and sign a new version of the point's channel into the hub's mirror."""
    if not plan.lessons:
        raise InvalidInput("nothing to publish: put at least one lesson with its files into the plan")
    build = hub_dir(box) / "build" / f"{point.channel}-{secrets.token_hex(4)}"
    storage.make_dirs(build)
    try:
        info = {"id": point.channel, "title": title or f"{point.name} 专递课堂",
                "schedule": [e.manifest_entry() for e in plan.entries]}
        (build / "channel.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
        for n, lesson in enumerate(plan.lessons):
            folder = build / f"l{n}"
            folder.mkdir()
            assets = []
            for i, a in enumerate(lesson.assets):
                what = f"{a.name} of {lesson.title}"
                name = _place(box, a.sha256, a.media_type, folder / str(i), what)
                asset: dict[str, Any] = {"role": a.role, "file": name}
                if a.pages:
                    asset["pages"] = [_place(box, page.sha256, page.media_type, folder / f"{i}-p{j + 1}",
                                             f"page {j + 1} of {what}") for j, page in enumerate(a.pages)]
                if a.pause_points:
                    asset["pause_points"] = [{"at": p.at, "prompt": p.prompt} for p in a.pause_points]
                assets.append(asset)
            doc = {"id": lesson.id, "title": lesson.title, "section": lesson.section, "path": lesson.path,
                   "assets": assets}
            (folder / "lesson.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        return channel.build(build, box.signing_key, mirror_root(box))
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _place(box: Box, sha256: str, media_type: str, stem: Path, what: str) -> str:
    """Put one of the hub's files into a lesson's build folder as stem + its suffix; return the file name."""
    source = file_path(box, sha256)
    if source is None:
        raise BuildError(f"the file {what} is no longer on the hub")
    target = stem.with_name(stem.name + SUFFIXES.get(media_type, ".bin"))
    _link(source, target)
    return target.name


def _link(source: Path, target: Path) -> None:
    # A hard link costs nothing; across file systems (a mirror on another disk) fall back to a copy.
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def published(box: Box, point: TeachingPoint) -> Manifest | None:
    """Return the point's channel as last published, or None."""
    found = channel.installed_manifest(mirror_root(box), point.channel)
    return found[0] if found else None
