"""Lessons a central-school teacher prepares: uploaded files, curriculum path, pause points.

A lesson's files are the hub's uploaded files (`hub/files/<sha256>`, see uploads.py) or, for a
lesson picked from a channel the hub holds (the national lessons), that channel's blobs.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tinydb import where

from ..channel import PATH_LEVELS, ROLES, SECTIONS
from ..errors import InvalidInput, NotFound
from ..storage import State
from ..store import is_sha256

SUFFIXES = {"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mp4", "application/pdf": ".pdf",
            "image/jpeg": ".jpg", "image/png": ".png"}
MAX_PROMPT = 200
DOCUMENT_ROLES = ("task_sheet", "exercise", "courseware", "lesson_plan", "textbook")


@dataclass(frozen=True)
class Page:
    """A page image of a document, so a TV with no PDF viewer shows it page by page."""

    sha256: str
    size: int
    media_type: str


@dataclass(frozen=True)
class PausePoint:
    """Where the video stops by itself, and what the class is asked to do then."""

    at: float
    prompt: str


@dataclass(frozen=True)
class HubAsset:
    """One file of a lesson."""

    role: str
    name: str
    sha256: str
    size: int
    media_type: str
    pause_points: tuple[PausePoint, ...] = ()
    pages: tuple[Page, ...] = ()


@dataclass(frozen=True)
class HubLesson:
    """A lesson as the hub holds it before publishing."""

    id: str
    title: str
    section: str
    path: dict[str, str]
    assets: tuple[HubAsset, ...]
    author: str
    updated: float
    source: str = "authored"  # or "channel:<id>" for a lesson picked from a channel the hub holds
    notes: str = field(default="")

    def as_dict(self) -> dict[str, Any]:
        """Return the lesson as plain values."""
        return asdict(self)

    @property
    def size(self) -> int:
        """Return the bytes a box needs for this lesson."""
        return sum(a.size + sum(p.size for p in a.pages) for a in self.assets)


def _from_doc(d: dict[str, Any]) -> HubLesson:
    assets = tuple(HubAsset(a["role"], a["name"], a["sha256"], a["size"], a["media_type"],
                            tuple(PausePoint(p["at"], p["prompt"]) for p in a.get("pause_points", [])),
                            tuple(Page(p["sha256"], p["size"], p["media_type"]) for p in a.get("pages", [])))
                   for a in d["assets"])
    return HubLesson(d["id"], d["title"], d["section"], dict(d["path"]), assets, d["author"], d["updated"],
                     d.get("source", "authored"), d.get("notes", ""))


def _check_path(path: Any) -> dict[str, str]:
    if not isinstance(path, dict):
        raise InvalidInput("path: an object of curriculum levels", "path")
    unknown = sorted(set(path) - set(PATH_LEVELS))
    if unknown:
        raise InvalidInput(f"path: unknown level {', '.join(unknown)}; use {', '.join(PATH_LEVELS)}", "path")
    clean = {}
    for level in PATH_LEVELS:
        value = path.get(level, "")
        if not isinstance(value, str) or len(value) > 40 or any(ord(c) < 32 for c in value):
            raise InvalidInput(f"path.{level}: one line of at most 40 characters", "path")
        if value.strip():
            clean[level] = value.strip()
    return clean


def _check_title(title: Any) -> str:
    if not isinstance(title, str) or not title.strip() or len(title) > 100:
        raise InvalidInput("title: 1-100 characters", "title")
    return title.strip()


class Lessons:
    """The hub's lessons, in the state database (table "hub_lessons")."""

    def __init__(self, state: State) -> None:
        self.state = state

    def create(self, title: str, path: dict[str, str], author: str, section: str = "课程教学") -> HubLesson:
        """Start a new lesson with no files yet."""
        if section not in SECTIONS:
            raise InvalidInput(f"section: one of {'、'.join(SECTIONS)}", "section")
        doc = {"id": f"hub-{secrets.token_hex(5)}", "title": _check_title(title), "section": section,
               "path": _check_path(path), "assets": [], "author": author, "updated": time.time(),
               "source": "authored", "notes": ""}
        with self.state.transaction() as db:
            db.table("hub_lessons").insert(doc)
        return _from_doc(doc)

    def pick(self, lesson: Any, channel_id: str, author: str) -> HubLesson:
        """Take a lesson from a channel the hub holds, files and pause points as they are."""
        assets = [{"role": a.role, "name": a.name, "sha256": a.blob.sha256, "size": a.blob.size,
                   "media_type": a.blob.media_type,
                   "pause_points": [{"at": p.at, "prompt": p.prompt} for p in a.pause_points],
                   "pages": [{"sha256": p.sha256, "size": p.size, "media_type": p.media_type} for p in a.pages]}
                  for a in lesson.assets]
        doc = {"id": lesson.id, "title": lesson.title, "section": lesson.section, "path": dict(lesson.path),
               "assets": assets, "author": author, "updated": time.time(), "source": f"channel:{channel_id}",
               "notes": ""}
        with self.state.transaction() as db:
            db.table("hub_lessons").upsert(doc, where("id") == lesson.id)
        return _from_doc(doc)

    def get(self, lesson_id: str) -> HubLesson:
        """Return a lesson, or raise NotFound."""
        with self.state.transaction() as db:
            doc = db.table("hub_lessons").get(where("id") == lesson_id)
        if doc is None:
            raise NotFound(f"no lesson {lesson_id!r} on this hub")
        return _from_doc(doc)

    def all(self) -> list[HubLesson]:
        """Return every lesson, newest first."""
        with self.state.transaction() as db:
            docs = db.table("hub_lessons").all()
        return sorted((_from_doc(d) for d in docs), key=lambda lesson: -lesson.updated)

    def _change(self, lesson_id: str, change: Any) -> HubLesson:
        with self.state.transaction() as db:
            table = db.table("hub_lessons")
            found = table.get(where("id") == lesson_id)
            if found is None:
                raise NotFound(f"no lesson {lesson_id!r} on this hub")
            doc = dict(found)
            change(doc)
            doc["updated"] = time.time()
            table.update(doc, where("id") == lesson_id)
        return _from_doc(doc)

    def describe(self, lesson_id: str, title: str, path: dict[str, str], section: str) -> HubLesson:
        """Change a lesson's title, curriculum path and section."""
        if section not in SECTIONS:
            raise InvalidInput(f"section: one of {'、'.join(SECTIONS)}", "section")
        clean_title, clean_path = _check_title(title), _check_path(path)
        return self._change(lesson_id, lambda d: d.update(title=clean_title, path=clean_path, section=section))

    def add_file(self, lesson_id: str, role: str, name: str, sha256: str, size: int, media_type: str) -> HubLesson:
        """Attach an uploaded file; a lesson has one video, a new one replaces it."""
        if role not in ROLES:
            raise InvalidInput(f"role: one of {', '.join(ROLES)}", "role")
        if not is_sha256(sha256):
            raise InvalidInput("sha256: the file's hash as the upload answered it", "file")
        if media_type not in SUFFIXES:
            raise InvalidInput(f"a file of type {media_type} cannot go into a lesson", "file")
        if role == "video" and not media_type.startswith("video/"):
            raise InvalidInput("the lesson video must be a video file", "file")

        def attach(d: dict[str, Any]) -> None:
            document = next((a for a in d["assets"] if a["role"] == role), None)
            if role in DOCUMENT_ROLES and media_type.startswith("image/") and document is not None:
                # An image sent for a document the lesson has already is its next page.
                document.setdefault("pages", []).append({"sha256": sha256, "size": size, "media_type": media_type})
                return
            kept = [a for a in d["assets"] if not (role == "video" and a["role"] == "video")]
            kept.append({"role": role, "name": name[:100] or role, "sha256": sha256, "size": size,
                         "media_type": media_type, "pause_points": [], "pages": []})
            d["assets"] = kept

        return self._change(lesson_id, attach)

    def remove_file(self, lesson_id: str, sha256: str) -> HubLesson:
        """Take a file (or a page of a document) off a lesson."""

        def remove(d: dict[str, Any]) -> None:
            d["assets"] = [a for a in d["assets"] if a["sha256"] != sha256]
            for a in d["assets"]:
                a["pages"] = [p for p in a.get("pages", []) if p["sha256"] != sha256]

        return self._change(lesson_id, remove)

    def add_pause_point(self, lesson_id: str, at: Any, prompt: Any) -> HubLesson:
        """Add a pause point to the lesson's video at `at` seconds with a prompt for the class."""
        if not isinstance(at, (int, float)) or isinstance(at, bool) or not 0 <= at < 24 * 3600:
            raise InvalidInput("at: seconds into the video", "at")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
            raise InvalidInput(f"prompt: 1-{MAX_PROMPT} characters", "prompt")

        def add(d: dict[str, Any]) -> None:
            video = next((a for a in d["assets"] if a["role"] == "video"), None)
            if video is None:
                raise InvalidInput("upload the lesson video first", "at")
            points = [p for p in video.get("pause_points", []) if abs(p["at"] - at) > 0.05]
            points.append({"at": round(float(at), 2), "prompt": prompt.strip()})
            video["pause_points"] = sorted(points, key=lambda p: p["at"])

        return self._change(lesson_id, add)

    def remove_pause_point(self, lesson_id: str, at: float) -> HubLesson:
        """Remove the pause point at `at` seconds."""

        def remove(d: dict[str, Any]) -> None:
            for a in d["assets"]:
                if a["role"] == "video":
                    a["pause_points"] = [p for p in a.get("pause_points", []) if abs(p["at"] - at) > 0.05]

        return self._change(lesson_id, remove)
