"""Channels: the manifest format, building and signing one, verifying one, installing one into a box.

A channel on disk (a mirror, a USB drive, a box's own data directory):

    <root>/channels/<id>/manifest.json       the whole channel, one JSON document
    <root>/channels/<id>/manifest.json.sig   base64 ed25519 signature over the exact bytes
    <root>/blobs/sha256/<aa>/<sha256>        every file, named by its hash
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import keys, storage
from .errors import BuildError, ChannelRejected
from .store import BlobMismatch, blob_relpath, copy_verified, hash_file, is_sha256

log = logging.getLogger(__name__)

FORMAT = "classbox-channel/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
ACTIVATING = "activating"  # a manifest and its signature on their way in (see activate)
ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
LESSON_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

SECTIONS = ("课程教学", "专题教育", "课后服务", "教师研修", "家庭教育", "教改实践经验")
ROLES = ("video", "courseware", "lesson_plan", "task_sheet", "exercise", "textbook", "cover")
PATH_LEVELS = ("stage", "grade", "subject", "edition", "volume", "unit", "lesson", "period")

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".pdf": "application/pdf",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".ppt": "application/vnd.ms-powerpoint",
    ".doc": "application/msword",
}


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class PausePoint:
    """A moment in a video where playback stops and a prompt is shown."""

    at: float
    prompt: str


@dataclass(frozen=True)
class Blob:
    """A file of a channel, named by its hash."""

    sha256: str
    size: int
    media_type: str


@dataclass(frozen=True)
class Asset:
    """One file of a lesson in one role, with the page images of a document and the pause points of a video."""

    role: str
    name: str
    blob: Blob
    pages: tuple[Blob, ...] = ()
    pause_points: tuple[PausePoint, ...] = ()

    def blobs(self) -> tuple[Blob, ...]:
        """Return every blob this asset needs."""
        return (self.blob, *self.pages)


@dataclass(frozen=True)
class Lesson:
    """One lesson: its place in the curriculum and its assets."""

    id: str
    title: str
    section: str
    path: tuple[tuple[str, str], ...]
    assets: tuple[Asset, ...]
    provenance: tuple[tuple[str, Any], ...] = ()

    def level(self, name: str) -> str:
        """Return one level of the curriculum path ('' when absent)."""
        return dict(self.path).get(name, "")

    def blobs(self) -> tuple[Blob, ...]:
        """Return every blob the lesson needs."""
        return tuple(b for a in self.assets for b in a.blobs())


@dataclass(frozen=True)
class Manifest:
    """A whole channel as published."""

    id: str
    title: str
    version: int
    issued_at: str
    expires_at: str
    publisher: str
    lessons: tuple[Lesson, ...]
    description: str = ""
    schedule: tuple[dict[str, Any], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def blobs(self) -> dict[str, Blob]:
        """Return every blob of the channel by hash."""
        return {b.sha256: b for lesson in self.lessons for b in lesson.blobs()}

    def lesson_ids(self) -> set[str]:
        """Return the ids of the channel's lessons."""
        return {lesson.id for lesson in self.lessons}

    def expired(self, now: float) -> bool:
        """Tell whether the manifest's expiry time has passed."""
        return parse_time(self.expires_at) < now


# ---------------------------------------------------------------- strict parsing


class _Invalid(Exception):
    pass


def _obj(value: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{where} must be an object")
    missing = required - value.keys()
    if missing:
        raise _Invalid(f"{where} lacks {', '.join(sorted(missing))}")
    unknown = value.keys() - required - optional
    if unknown:
        raise _Invalid(f"{where} has unknown field {', '.join(sorted(unknown))}")
    return value


def _str(value: Any, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise _Invalid(f"{where} must be a non-empty string")
    return value


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Invalid(f"{where} must be a non-negative integer")
    return value


def _blob(value: Any, where: str) -> Blob:
    d = _obj(value, where, {"sha256", "size", "media_type"}, set())
    if not is_sha256(d["sha256"]):
        raise _Invalid(f"{where}.sha256 must be 64 lower-case hex digits")
    return Blob(d["sha256"], _int(d["size"], f"{where}.size"), _str(d["media_type"], f"{where}.media_type"))


def _asset(value: Any, where: str) -> Asset:
    d = _obj(value, where, {"role", "name", "sha256", "size", "media_type"}, {"pages", "pause_points"})
    role = _str(d["role"], f"{where}.role")
    if role not in ROLES:
        raise _Invalid(f"{where}.role {role!r} is not one of {', '.join(ROLES)}")
    blob = _blob({k: d[k] for k in ("sha256", "size", "media_type")}, where)
    pages = d.get("pages", [])
    points = d.get("pause_points", [])
    if not isinstance(pages, list) or not isinstance(points, list):
        raise _Invalid(f"{where}.pages and .pause_points must be lists")
    return Asset(
        role=role,
        name=_str(d["name"], f"{where}.name"),
        blob=blob,
        pages=tuple(_blob(p, f"{where}.pages[{i}]") for i, p in enumerate(pages)),
        pause_points=tuple(_pause_point(p, f"{where}.pause_points[{i}]") for i, p in enumerate(points)),
    )


def _pause_point(value: Any, where: str) -> PausePoint:
    d = _obj(value, where, {"at", "prompt"}, set())
    at = d["at"]
    if not isinstance(at, (int, float)) or isinstance(at, bool) or not 0 <= at < 86400:
        raise _Invalid(f"{where}.at must be seconds from the start of the video")
    return PausePoint(float(at), _str(d["prompt"], f"{where}.prompt"))


def _path(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    d = _obj(value, where, set(), set(PATH_LEVELS))
    return tuple((k, _str(d[k], f"{where}.{k}", allow_empty=True)) for k in PATH_LEVELS if d.get(k))


def _lesson(value: Any, where: str) -> Lesson:
    d = _obj(value, where, {"id", "title", "section", "path", "assets"}, {"provenance"})
    lesson_id = _str(d["id"], f"{where}.id")
    if not LESSON_ID_RE.fullmatch(lesson_id):
        raise _Invalid(f"{where}.id {lesson_id!r} may hold only letters, digits, '.', '_' and '-'")
    section = _str(d["section"], f"{where}.section")
    if section not in SECTIONS:
        raise _Invalid(f"{where}.section {section!r} is not one of {'、'.join(SECTIONS)}")
    if not isinstance(d["assets"], list) or not d["assets"]:
        raise _Invalid(f"{where}.assets must be a non-empty list")
    provenance = d.get("provenance", {})
    if not isinstance(provenance, dict):
        raise _Invalid(f"{where}.provenance must be an object")
    return Lesson(
        id=lesson_id,
        title=_str(d["title"], f"{where}.title"),
        section=section,
        path=_path(d["path"], f"{where}.path"),
        assets=tuple(_asset(a, f"{where}.assets[{i}]") for i, a in enumerate(d["assets"])),
        provenance=tuple(sorted(provenance.items())),
    )


TOP_REQUIRED = {"format", "id", "title", "version", "issued_at", "expires_at", "publisher", "lessons"}
TOP_OPTIONAL = {"description", "schedule", "meta"}


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes strictly; raise ChannelRejected('invalid') naming the first problem."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ChannelRejected("invalid", f"manifest is not valid JSON: {exc}") from None
    try:
        d = _obj(doc, "manifest", TOP_REQUIRED, TOP_OPTIONAL)
        if d["format"] != FORMAT:
            raise _Invalid(f"manifest.format is {d['format']!r}, this box reads {FORMAT!r}")
        channel_id = _str(d["id"], "manifest.id")
        if not ID_RE.fullmatch(channel_id):
            raise _Invalid(f"manifest.id {channel_id!r} must be lower-case letters, digits, '.', '_', '-'")
        for name in ("issued_at", "expires_at"):
            parse_time(_str(d[name], f"manifest.{name}"))
        if not isinstance(d["lessons"], list):
            raise _Invalid("manifest.lessons must be a list")
        lessons = tuple(_lesson(x, f"lessons[{i}]") for i, x in enumerate(d["lessons"]))
        seen: set[str] = set()
        for lesson in lessons:
            if lesson.id in seen:
                raise _Invalid(f"lesson id {lesson.id!r} appears twice")
            seen.add(lesson.id)
        schedule = d.get("schedule", [])
        meta = d.get("meta", {})
        if not isinstance(schedule, list):
            raise _Invalid("manifest.schedule must be a list")
        schedule = [_schedule_entry(e, f"schedule[{i}]", seen) for i, e in enumerate(schedule)]
        if not isinstance(meta, dict):
            raise _Invalid("manifest.meta must be an object")
        return Manifest(
            id=channel_id,
            title=_str(d["title"], "manifest.title"),
            version=_int(d["version"], "manifest.version"),
            issued_at=d["issued_at"],
            expires_at=d["expires_at"],
            publisher=_str(d["publisher"], "manifest.publisher"),
            lessons=lessons,
            description=d.get("description", "") if isinstance(d.get("description", ""), str) else "",
            schedule=tuple(schedule),
            meta=meta,
        )
    except _Invalid as exc:
        raise ChannelRejected("invalid", f"manifest is malformed: {exc}") from None


def _schedule_entry(value: Any, where: str, lesson_ids: set[str]) -> dict[str, Any]:
    """Check one timetable entry: which lesson, on which date, optionally which period and class."""
    d = _obj(value, where, {"lesson", "date"}, {"period", "class", "room", "note"})
    if d["lesson"] not in lesson_ids:
        raise _Invalid(f"{where}.lesson {d['lesson']!r} is not a lesson of this channel")
    if not isinstance(d["date"], str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d["date"]):
        raise _Invalid(f"{where}.date must be YYYY-MM-DD")
    try:
        datetime.strptime(d["date"], "%Y-%m-%d")
    except ValueError:
        raise _Invalid(f"{where}.date {d['date']!r} is not a date") from None
    if "period" in d and (not isinstance(d["period"], int) or isinstance(d["period"], bool) or d["period"] < 1):
        raise _Invalid(f"{where}.period must be a whole number from 1")
    return d


def parse_time(value: str) -> float:
    """Parse an ISO 8601 UTC time ('2026-11-21T08:00:00Z') into a Unix time."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise _Invalid(f"{value!r} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        raise _Invalid(f"{value!r} has no time zone")
    return dt.timestamp()


def format_time(ts: float) -> str:
    """Format a Unix time as ISO 8601 UTC."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_manifest(doc: dict[str, Any]) -> bytes:
    """Serialise a manifest document; these exact bytes are what gets signed."""
    return json.dumps(doc, ensure_ascii=False, indent=1).encode() + b"\n"


# ---------------------------------------------------------------- reading a channel folder


def channel_dir(root: Path, channel_id: str) -> Path:
    """Return where a channel's manifest lives under a root."""
    return Path(root) / "channels" / channel_id


def channel_ids(root: Path) -> list[str]:
    """List the channels present under a mirror root."""
    d = Path(root) / "channels"
    try:
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if (p / MANIFEST).is_file() and ID_RE.fullmatch(p.name))
    except OSError:  # unreadable, or a name too long to look up: no channel the box can use
        return []


def read_signed(root: Path, channel_id: str, max_bytes: int) -> tuple[bytes, bytes]:
    """Read a channel's manifest and signature bytes, refusing oversized or escaping files."""
    folder = channel_dir(root, channel_id)
    manifest_path, sig_path = folder / MANIFEST, folder / SIGNATURE
    for p in (manifest_path, sig_path):
        _inside(Path(root), p)
    try:
        size = manifest_path.stat().st_size
    except FileNotFoundError:
        raise ChannelRejected("missing", f"{manifest_path} does not exist") from None
    if size > max_bytes:
        raise ChannelRejected("too_large", f"manifest is {size} bytes, over the {max_bytes}-byte limit")
    with open(manifest_path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ChannelRejected("too_large", f"manifest is over the {max_bytes}-byte limit")
    try:
        with open(sig_path, "rb") as f:
            sig = f.read(1024)
    except FileNotFoundError:
        raise ChannelRejected("bad_signature", f"{sig_path} does not exist: the manifest is unsigned") from None
    return data, sig


def _inside(root: Path, path: Path) -> Path:
    """Resolve path and make sure it stays inside root (symlinks included)."""
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and not real.is_relative_to(real_root):
        raise ChannelRejected("path_escape", f"{path} leads outside {root}")
    return real


def check_signed(data: bytes, sig: bytes, trusted: Ed25519PublicKey, now: float) -> Manifest:
    """Verify publisher key, signature, format and expiry of manifest bytes; return the manifest."""
    try:
        publisher = json.loads(data).get("publisher")
    except (ValueError, UnicodeDecodeError, AttributeError):
        publisher = None
    expected = keys.key_id(trusted)
    if publisher != expected:
        raise ChannelRejected(
            "unknown_key", f"manifest is signed by key {publisher!r}, but this channel trusts only {expected}"
        )
    if not keys.signature_valid(trusted, data, sig):
        raise ChannelRejected("bad_signature", "the manifest's signature does not match its content")
    manifest = parse_manifest(data)
    if manifest.expired(now):
        raise ChannelRejected("expired", f"manifest expired at {manifest.expires_at}")
    return manifest


def open_source_blob(root: Path, blob: Blob) -> BinaryIO:
    """Open a blob of a channel folder for reading, refusing links that lead outside it."""
    path = Path(root) / blob_relpath(blob.sha256)
    real = _inside(Path(root), path)
    try:
        return open(real, "rb")
    except (FileNotFoundError, IsADirectoryError):
        raise ChannelRejected("blob_mismatch", f"file {blob.sha256} is missing from {root}") from None


def verify(
    root: Path, channel_id: str | None, trusted: Ed25519PublicKey, max_bytes: int, now: float | None = None
) -> Manifest:
    """Check a channel folder completely: signature, format, expiry, every blob's size and hash."""
    now = time.time() if now is None else now
    channel_id = pick_channel(root, channel_id)
    data, sig = read_signed(root, channel_id, max_bytes)
    manifest = check_signed(data, sig, trusted, now)
    _check_id(manifest, channel_id)
    for blob in manifest.blobs().values():
        with open_source_blob(root, blob) as src:
            try:
                copy_verified(src, _Discard(), blob.sha256, blob.size)
            except BlobMismatch as exc:
                raise ChannelRejected("blob_mismatch", f"file {blob.sha256}: {exc}") from None
    return manifest


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def pick_channel(root: Path, channel_id: str | None) -> str:
    """Return the channel to act on: the one named, or the only one under root."""
    root = Path(root)
    if channel_id is not None:
        if not ID_RE.fullmatch(channel_id):
            raise ChannelRejected("invalid", f"{channel_id!r} is not a channel id")
        return channel_id
    found = channel_ids(root)
    if not found:
        raise ChannelRejected("missing", f"no channel found under {root} (expected {root}/channels/<id>/{MANIFEST})")
    if len(found) > 1:
        names = ", ".join(found)
        raise ChannelRejected("ambiguous", f"{root} holds several channels ({names}); name one with --channel")
    return found[0]


def _check_id(manifest: Manifest, channel_id: str) -> None:
    if manifest.id != channel_id:
        raise ChannelRejected("invalid", f"manifest says channel {manifest.id!r} but lies in folder {channel_id!r}")


# ---------------------------------------------------------------- installing into a box


def installed_manifest(box_root: Path, channel_id: str) -> tuple[Manifest, bytes] | None:
    """Return the active manifest of a channel in a box, or None."""
    path = channel_dir(box_root, channel_id) / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return parse_manifest(data), data


def activate(root: Path, channel_id: str, data: bytes, sig: bytes) -> None:
    """Make manifest bytes and their signature the active ones of a channel under root, both or neither."""
    folder = channel_dir(root, channel_id)
    # Two files cannot be replaced in one step: the pair goes first into one file, which
    # finish_activations() completes at the next start should a power cut come in between.
    storage.atomic_write(folder / ACTIVATING, b"%d\n" % len(sig) + sig + data)
    _install(folder, data, sig)


def _install(folder: Path, data: bytes, sig: bytes) -> None:
    storage.atomic_write(folder / SIGNATURE, sig)
    storage.atomic_write(folder / MANIFEST, data)
    storage.remove_file(folder / ACTIVATING)


def finish_activations(root: Path) -> int:
    """Complete the activations a power cut interrupted under a mirror or data root; return how many."""
    finished = 0
    for pending in sorted((Path(root) / "channels").glob(f"*/{ACTIVATING}")):
        length, _, rest = pending.read_bytes().partition(b"\n")
        if not length.isdigit() or int(length) > len(rest):  # not ours, or damaged: the old pair stays
            log.warning("%s is not a whole activation; removed, channel %s stays as it was", pending,
                        pending.parent.name)
            storage.remove_file(pending)
            continue
        _install(pending.parent, rest[int(length):], rest[:int(length)])
        log.warning("finished activating channel %s, which a power cut interrupted", pending.parent.name)
        finished += 1
    return finished


# ---------------------------------------------------------------- building from a source folder


def build(
    src: Path,
    key: Ed25519PrivateKey,
    out: Path,
    expires_days: float = 365,
    now: float | None = None,
) -> Manifest:
    """Build a signed channel in the mirror layout under out from a source folder."""
    now = time.time() if now is None else now
    src = Path(src)
    if not src.is_dir():
        raise BuildError(f"{src} is not a folder")
    info = _read_json(src / "channel.json")
    if not isinstance(info, dict):
        raise BuildError(f"{src / 'channel.json'} must hold a JSON object")
    for name in ("id", "title"):
        if not isinstance(info.get(name), str) or not info[name].strip():
            raise BuildError(f"{src / 'channel.json'}: field {name!r} is missing or empty")
    if not ID_RE.fullmatch(info["id"]):
        raise BuildError(f"{src / 'channel.json'}: id {info['id']!r} must be lower-case letters, digits, '.', '_', '-'")
    lesson_files = sorted(src.rglob("lesson.json"))
    if not lesson_files:
        raise BuildError(f"{src} has no <folder>/lesson.json")
    lessons = [_build_lesson(src, f, out) for f in lesson_files]
    seen: dict[str, Path] = {}
    for lesson, f in zip(lessons, lesson_files, strict=True):
        if lesson["id"] in seen:
            raise BuildError(f"{f}: lesson id {lesson['id']!r} is used by {seen[lesson['id']]} too")
        seen[lesson["id"]] = f
    meta = {k: v for k, v in info.items() if k not in {"id", "title", "description", "schedule"}}
    description = info["description"] if isinstance(info.get("description"), str) else None
    try:
        return publish(out, key, info["id"], info["title"], lessons, now=now, expires_days=expires_days,
                       description=description, schedule=info.get("schedule"), meta=meta)
    except BuildError as exc:
        raise BuildError(f"{src / 'channel.json'}: {exc}") from None


def previous_manifest(out: Path, channel_id: str) -> dict[str, Any] | None:
    """Return the manifest document a mirror root holds for a channel already, or None."""
    try:
        doc = json.loads((channel_dir(out, channel_id) / MANIFEST).read_bytes())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def publish(
    out: Path,
    key: Ed25519PrivateKey,
    channel_id: str,
    title: str,
    lessons: list[dict[str, Any]],
    now: float,
    expires_days: float = 365,
    description: str | None = None,
    schedule: Any = None,
    meta: dict[str, Any] | None = None,
) -> Manifest:
    """Sign lessons (their files already under out/blobs) as the next version of a channel under out."""
    previous = previous_manifest(out, channel_id) or {}
    try:
        last = int(previous.get("version", 0))
    except (ValueError, TypeError):
        last = 0
    doc: dict[str, Any] = {
        "format": FORMAT,
        "id": channel_id,
        "title": title,
        # Time-based so that builds into different folders still only go up.
        "version": max(last + 1, int(now)),
        "issued_at": format_time(now),
        "expires_at": format_time(now + expires_days * 86400),
        "publisher": keys.key_id(key.public_key()),
        "lessons": lessons,
    }
    if description is not None:
        doc["description"] = description
    if schedule is not None:
        doc["schedule"] = schedule
    if meta:
        doc["meta"] = meta
    data = encode_manifest(doc)
    try:
        manifest = parse_manifest(data)  # what we publish must pass our own strict reader
    except ChannelRejected as exc:
        raise BuildError(str(exc)) from None
    activate(out, channel_id, data, keys.sign(key, data))
    return manifest


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BuildError(f"{path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildError(f"{path} is not valid JSON: {exc}") from None


def _build_lesson(src: Path, lesson_file: Path, out: Path) -> dict[str, Any]:
    doc = _read_json(lesson_file)
    where = str(lesson_file)
    if not isinstance(doc, dict):
        raise BuildError(f"{where} must hold a JSON object")
    for name in ("id", "title", "section", "path", "assets"):
        if name not in doc:
            raise BuildError(f"{where}: field {name!r} is missing")
    if not isinstance(doc["assets"], list) or not doc["assets"]:
        raise BuildError(f"{where}: 'assets' must be a non-empty list")
    folder = lesson_file.parent
    assets = []
    for i, a in enumerate(doc["assets"]):
        if not isinstance(a, dict) or not isinstance(a.get("file"), str):
            raise BuildError(f"{where}: assets[{i}] needs a 'file'")
        asset: dict[str, Any] = {
            "role": a.get("role"),
            "name": Path(a["file"]).name,
            **_publish_file(src, folder, a["file"], out, f"{where}: assets[{i}].file"),
        }
        pages = a.get("pages", [])
        if not isinstance(pages, list):
            raise BuildError(f"{where}: assets[{i}].pages must be a list of file names")
        if pages:
            asset["pages"] = [
                _publish_file(src, folder, p, out, f"{where}: assets[{i}].pages[{j}]") for j, p in enumerate(pages)
            ]
        if a.get("pause_points"):
            asset["pause_points"] = a["pause_points"]
        unknown = a.keys() - {"role", "file", "pages", "pause_points"}
        if unknown:
            raise BuildError(f"{where}: assets[{i}] has unknown field {', '.join(sorted(unknown))}")
        assets.append(asset)
    lesson = {k: doc[k] for k in ("id", "title", "section", "path")}
    lesson["assets"] = assets
    if "provenance" in doc:
        lesson["provenance"] = doc["provenance"]
    try:
        _lesson(lesson, where)
    except _Invalid as exc:
        raise BuildError(str(exc)) from None
    return lesson


def _publish_file(src: Path, folder: Path, name: Any, out: Path, where: str) -> dict[str, Any]:
    """Copy one source file into out's blob store (unless there already) and describe it."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise BuildError(f"{where}: not a file name")
    path = folder / name
    real = path.resolve()
    if not real.is_relative_to(src.resolve()):
        raise BuildError(f"{where}: {name!r} leads outside the source folder {src}")
    if not real.is_file():
        raise BuildError(f"{where}: {path} does not exist")
    sha256, size = hash_file(real)
    target = Path(out) / blob_relpath(sha256)
    if not (target.is_file() and target.stat().st_size == size):
        with open(real, "rb") as f, storage.new_file(target) as dst:
            try:
                copy_verified(f, dst, sha256, size)
            except BlobMismatch as exc:
                raise BuildError(f"{where}: {path} changed while being read ({exc})") from None
    return {"sha256": sha256, "size": size, "media_type": media_type(real.name)}


def media_type(name: str) -> str:
    """Return the media type a file name's extension stands for."""
    return MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
