"""Building a signed channel from the national platform's catalogue.

Each 课时 of a lesson package becomes one lesson (`<package id>.p<n>`), with its curriculum path
by name (学段 → 年级 → 学科 → 版本 → 册次 → chapters → lesson → 课时), its resources as assets
(微课视频 → video, 课件 → courseware, 教学设计 → lesson_plan, 学习任务单 → task_sheet,
课后练习 → exercise, the video's thumbnail → cover) and its provenance. A textbook with files
becomes a lesson of its own (`<textbook id>.book`, role textbook).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .. import channel
from ..channel import LESSON_ID_RE, Manifest
from ..errors import BuildError
from ..store import blob_relpath
from .catalogue import PATH_DIMENSIONS, Catalogue, Item, Package, Problem, Resource, period_number, time_ms
from .catalogue import read as read_catalogue
from .files import Files, Mismatch, Missing

PLATFORM = "国家中小学智慧教育平台"
SECTION = "课程教学"
ROLES = {
    "micro_lesson_video": "video",
    "coursewares": "courseware",
    "lesson_plandesign": "lesson_plan",
    "learning_task": "task_sheet",
    "after_class_exercise": "exercise",
    "textbook": "textbook",
}
DOCUMENT_FORMATS = ("pdf", "pptx", "ppt", "docx", "doc")
COVER = "封面"
NEEDS_MP4 = "needs an MP4 rendition (the platform offers this video only as encrypted HLS)"


@dataclass
class Summary:
    """What a build did: lessons, and per resource kind the assets present, missing or skipped and why."""

    lessons_built: int = 0
    lessons_carried: int = 0
    lessons_unbuilt: list[str] = field(default_factory=list)
    present: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    manifest: Manifest | None = None
    catalogue_version: str = ""
    files: Files | None = None

    def count(self, kind: str, outcome: str, reason: str = "") -> None:
        """Count one asset of a kind as present, missing or skipped (with why)."""
        getattr(self, outcome)[kind] += 1
        if reason:
            self.reasons.setdefault(kind, Counter())[f"{outcome}: {reason}"] += 1

    def kinds(self) -> list[str]:
        """Return every resource kind met, in the order teachers know them."""
        order = ["微课视频", "课件", "教学设计", "学习任务单", "课后练习", "电子教材", COVER]
        met = set(self.present) | set(self.missing) | set(self.skipped)
        return [k for k in order if k in met] + sorted(met - set(order))

    def lines(self) -> list[str]:
        """Return the summary as the command prints it."""
        out = []
        m = self.manifest
        if m is not None:
            out.append(f"built channel {m.id} version {m.version}: {len(m.lessons)} lessons "
                       f"({self.lessons_built} built, {self.lessons_carried} unchanged since the last build), "
                       f"catalogue version {self.catalogue_version or 'unknown (no data_version.json)'}")
        if self.files is not None:
            f = self.files
            out.append(f"files: {f.copied} copied ({f.bytes_copied / 1e6:.1f} MB), {f.downloaded} downloaded "
                       f"({f.bytes_downloaded / 1e6:.1f} MB), {f.in_place} already in place (not copied again)")
        width = max((len(k) for k in self.kinds()), default=0)
        for kind in self.kinds():
            out.append(f"  {kind.ljust(width, '　')}  present {self.present[kind]:>4}  missing {self.missing[kind]:>4}"
                       f"  skipped {self.skipped[kind]:>4}")
            for reason, n in sorted(self.reasons.get(kind, Counter()).items()):
                out.append(f"      {n:>4} × {reason}")
        if self.lessons_unbuilt:
            out.append(f"lessons not built ({len(self.lessons_unbuilt)}):")
            out += [f"  {x}" for x in self.lessons_unbuilt]
        if self.problems:
            out.append(f"problems ({len(self.problems)}):")
            out += [f"  {p}" for p in self.problems]
        return out


def parse_since(value: str) -> int:
    """Return --since as milliseconds since 1970: a module version (ms), Unix seconds, or an ISO date/time."""
    text = value.strip()
    if text.isdigit():
        n = int(text)
        return n if n >= 10**11 else n * 1000
    ms = time_ms(text if "T" in text else text + "T00:00:00+08:00")
    if not ms:
        raise BuildError(f"--since {value!r} is neither a catalogue version (like 1737259342885) nor a date")
    return ms


def build(
    catalogue_dir: Path,
    key: Ed25519PrivateKey,
    out: Path,
    files: Files,
    channel_id: str = "smartedu",
    title: str = PLATFORM,
    since: str | None = None,
    expires_days: float = 365,
    now: float | None = None,
    on_lesson: Callable[[int, int, str], None] | None = None,  # (packages done, of, the one now begun)
) -> Summary:
    """Build (or rebuild) a signed channel from a catalogue folder into the mirror layout under out."""
    now = time.time() if now is None else now
    catalogue_dir = Path(catalogue_dir)
    if not catalogue_dir.is_dir():
        raise BuildError(f"{catalogue_dir} is not a folder")
    if not channel.ID_RE.fullmatch(channel_id):
        raise BuildError(f"channel id {channel_id!r} must be lower-case letters, digits, '.', '_', '-'")
    previous = channel.previous_manifest(out, channel_id)
    since_ms = None
    if since is not None:
        since_ms = parse_since(since)
        if previous is None:
            raise BuildError(f"--since: {out} holds no earlier build of channel {channel_id!r} to update; "
                             "build it once without --since")
        built_from = str((previous.get("meta") or {}).get("catalogue_version", ""))
        if built_from.isdigit() and parse_since(built_from) < since_ms:
            raise BuildError(f"--since {since} is after catalogue version {built_from}, which the channel in {out} "
                             "was built from: the changes between them would be missed")
    cat = read_catalogue(catalogue_dir)
    if not cat.packages and not cat.problems:
        raise BuildError(f"{catalogue_dir} holds no lesson package or textbook of the platform "
                         f"({cat.files} JSON files read)")
    summary = Summary(problems=list(cat.problems), catalogue_version=cat.version, files=files)
    lessons: list[dict[str, Any]] = []
    rebuild = sorted(cat.packages.values(), key=_order)
    if since_ms is not None and previous is not None:
        carried, rebuild = _carry(previous, cat, since_ms, out)
        lessons += carried
        summary.lessons_carried = len(carried)
    try:
        for n, package in enumerate(rebuild, 1):
            if on_lesson:
                on_lesson(n - 1, len(rebuild), package.title)
            built = _package_lessons(package, cat, files, summary)
            lessons += built
            summary.lessons_built += len(built)
    finally:
        files.save()
    if on_lesson and rebuild:
        on_lesson(len(rebuild), len(rebuild), "")
    if not lessons:
        return summary  # nothing to publish; the summary says why
    meta = {"source": PLATFORM, "catalogue_version": cat.version, "catalogue_modules": cat.versions}
    if since is not None:
        meta["since"] = since
    summary.manifest = channel.publish(out, key, channel_id, title, lessons, now=now, expires_days=expires_days,
                                       meta=meta)
    return summary


def _order(p: Package) -> tuple[Any, ...]:
    return (not p.is_textbook, *(p.tags.get(d, "") for d in PATH_DIMENSIONS), p.title, p.id)


def _carry(previous: dict[str, Any], cat: Catalogue, since_ms: int,
           out: Path) -> tuple[list[dict[str, Any]], list[Package]]:
    """Split into lessons kept from the last build (unchanged since) and packages to build again."""
    carried, carried_ids = [], set()
    for lesson in previous.get("lessons") or []:
        pid = str((lesson.get("provenance") or {}).get("resource_id", ""))
        package = cat.packages.get(pid)
        if package is not None and package.changed_after(since_ms):
            continue
        assets = lesson.get("assets") or []
        blobs = [*assets, *(p for a in assets for p in a.get("pages") or [])]
        if not all((out / blob_relpath(b["sha256"])).is_file() for b in blobs):
            continue  # its files are gone from the output: build it again if the catalogue has it
        carried.append(lesson)
        carried_ids.add(pid)
    rebuild = [p for p in sorted(cat.packages.values(), key=_order)
               if p.id not in carried_ids]
    return carried, rebuild


def _path(package: Package, cat: Catalogue) -> dict[str, str]:
    path = {level: package.tags[dim] for dim, level in PATH_DIMENSIONS.items() if package.tags.get(dim)}
    for chapter_path in package.chapter_paths[:1]:
        names = [cat.chapters[c] for c in chapter_path if c in cat.chapters]
        if len(names) > 1:
            path["unit"] = " · ".join(names[:-1])
        elif names:
            path["unit"] = names[0]
    if not package.is_textbook:
        path["lesson"] = package.title
    return path


def _provenance(package: Package, cat: Catalogue, resources: list[Resource]) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "platform": PLATFORM,
        "resource_id": package.id,
        "update_time": package.update_time,
        "catalogue_version": cat.version,
        "resources": {r.id: r.update_time for r in resources},
    }
    if package.teachers:
        prov["teachers"] = "、".join(package.teachers)
    if package.textbook_id and package.textbook_id in cat.textbook_titles:
        prov["textbook"] = cat.textbook_titles[package.textbook_id]
    for dim, name in (("zxxxjjc", "textbook_generation"), ("zxxweek", "week")):
        if package.tags.get(dim):
            prov[name] = package.tags[dim]
    return prov


def _periods(package: Package) -> list[tuple[str, list[Resource]]]:
    groups: dict[str, list[Resource]] = {}
    for r in package.resources:
        groups.setdefault(r.period, []).append(r)
    return sorted(groups.items(), key=lambda kv: (period_number(kv[0]) or 999, list(groups).index(kv[0])))


def _package_lessons(package: Package, cat: Catalogue, files: Files, summary: Summary) -> list[dict[str, Any]]:
    if not LESSON_ID_RE.fullmatch(f"{package.id}.p1"):
        summary.problems.append(Problem(package.file, package.id, "has an id classbox cannot use as a lesson id; "
                                        "skipped"))
        return []
    periods = _periods(package)
    lessons = []
    used_numbers: set[int] = set()
    for index, (period, resources) in enumerate(periods, 1):
        number = period_number(period) or index
        if number in used_numbers:
            number = max(used_numbers) + 1
        used_numbers.add(number)
        suffix = "book" if package.is_textbook else f"p{number}"
        title = f"{package.title}（{period}）" if len(periods) > 1 and period else package.title
        try:
            assets = _assets(package, resources, files, summary)
        except Mismatch as exc:
            summary.problems.append(Problem(exc.where, exc.resource, f"{exc}; lesson {title} skipped"))
            continue
        if not any(a["role"] != "cover" for a in assets):
            summary.lessons_unbuilt.append(f"{title} ({package.id}): no file of it is present")
            continue
        path = _path(package, cat)
        if period:
            path["period"] = period
        lessons.append({"id": f"{package.id}.{suffix}", "title": title, "section": SECTION, "path": path,
                        "assets": assets, "provenance": _provenance(package, cat, resources)})
    return lessons


def _assets(package: Package, resources: list[Resource], files: Files, summary: Summary) -> list[dict[str, Any]]:
    assets: list[dict[str, Any]] = []
    cover: dict[str, Any] | None = None
    for r in resources:
        role = ROLES.get(r.kind)
        if role is None:
            summary.count(r.kind_name, "skipped", f"{r.kind_name} ({r.kind}) is not a kind of resource a TV shows")
            continue
        try:
            asset = _video(r, files) if role == "video" else _document(r, role, files)
        except Missing as exc:
            summary.count(r.kind_name, "missing", _reason(str(exc)))
            continue
        except _Skip as exc:
            summary.count(r.kind_name, "skipped", str(exc))
            continue
        except Mismatch as exc:
            raise Mismatch(exc.where, str(exc), r.id) from None
        summary.count(r.kind_name, "present")
        assets.append(asset)
        if cover is None and (role in ("video", "textbook")):
            cover = _cover(r, files, summary)
    if cover is not None:
        assets.append(cover)
    return assets


def _reason(text: str) -> str:
    """Make a reason countable: the same cause for different files reads the same."""
    if text.startswith("not found ("):
        return "not in the files folder (nor anything with its md5)"
    if text.startswith("page images incomplete"):
        return "page images incomplete"
    return re.sub(r"https?://\S+", "URL", text)


class _Skip(Exception):
    """An asset that is there but cannot be used; the message says why."""


def _video(r: Resource, files: Files) -> dict[str, Any]:
    mp4s = [i for i in r.items if i.format == "mp4" and not i.encrypted]
    for item in mp4s:
        try:
            blob = files.item(r.id, item)
        except Missing:
            continue
        return {"role": "video", "name": f"{r.kind_name}.mp4", **blob}
    local = files.local_mp4(r.id)
    if local is not None:
        return {"role": "video", "name": f"{r.kind_name}.mp4", **local}
    if any(i.format == "m3u8" or i.encrypted for i in r.items):
        raise _Skip(NEEDS_MP4)
    if not r.items:
        raise Missing("the catalogue lists no file for it")
    raise Missing("no MP4 of it in the files folder")


def _document(r: Resource, role: str, files: Files) -> dict[str, Any]:
    if not r.items:
        raise Missing("the catalogue lists no file for it")
    main = _main_document(r.items)
    if main is None:
        formats = sorted({i.format for i in r.items if i.format not in ("folder", "jpg", "png")})
        raise _Skip(f"only in formats a TV cannot show ({', '.join(formats) or 'none'})")
    blob = files.item(r.id, main)
    name = main.name if role == "textbook" and main.name else f"{r.kind_name}.{main.format}"
    asset: dict[str, Any] = {"role": role, "name": name, **blob}
    folder = next((i for i in r.items if i.format == "folder" and i.flag == "image"), None) or next(
        (i for i in r.items if i.format == "folder" and i.name == "image" and i.flag != "thumbnail"), None) or next(
        (i for i in r.items if i.format == "folder" and i.name == "image"), None)
    if folder is not None:
        try:
            asset["pages"] = files.pages(r.id, folder)
        except Missing:
            pass  # the PDF alone still shows on a TV that can; the page images are a help, not the asset
    return asset


def _main_document(items: tuple[Item, ...]) -> Item | None:
    for fmt in DOCUMENT_FORMATS:
        candidates = [i for i in items if i.format == fmt]
        if candidates:
            return next((i for i in candidates if i.flag == fmt), candidates[0])
    return None


def _cover(r: Resource, files: Files, summary: Summary) -> dict[str, Any] | None:
    item = next((i for i in r.items if i.format in ("jpg", "jpeg", "png") and i.flag.startswith("thumbnail")), None) \
        or next((i for i in r.items if i.format in ("jpg", "jpeg", "png")), None)
    if item is None:
        return None
    try:
        blob = files.item(r.id, item)
    except (Missing, Mismatch) as exc:
        summary.count(COVER, "missing", _reason(str(exc)))
        return None
    summary.count(COVER, "present")
    return {"role": "cover", "name": item.name or "cover.jpg", **blob}
