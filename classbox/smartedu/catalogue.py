"""Reading a folder of the national platform's catalogue JSON (国家中小学智慧教育平台).

The operator saves the platform's public JSON into one folder (any layout, any
file names). Each file is recognised by what it holds:

- `data_version.json`: `{"module": …, "module_version": …, "urls": …}`, the catalogue's version;
- the tag tree: `{"hierarchies": [{"children": [{"tag_id", "tag_dimension_id", "tag_name", …}]}]}`;
- a chapter tree (`trees/<textbook id>.json`): a list of `{"id", "title", "child_nodes": […]}`;
- a lesson package's detail (`resource_type_code` "national_lesson" with `relations.national_course_resource`);
- a textbook (教材, 电子教材): a record whose `ti_items` hold the book's PDF;
- a list of such records (`part_100.json` and the like).

A file that cannot be read is a Problem naming the file and the resource; the rest is read.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

# The curriculum dimensions of the tag tree, and what each is in a lesson's path.
PATH_DIMENSIONS = {"zxxxd": "stage", "zxxnj": "grade", "zxxxk": "subject", "zxxbb": "edition", "zxxcc": "volume"}
# Other dimensions the platform tags lesson packages and their resources with.
OTHER_DIMENSIONS = {
    "zxxxjjc": "新旧教材",
    "zxxweek": "周次",
    "bkks": "课时",
    "bklx": "资源类型",
}
KNOWN_DIMENSIONS = set(PATH_DIMENSIONS) | set(OTHER_DIMENSIONS)

# What each kind of resource in a lesson package is called, by code and by name.
KIND_NAMES = {
    "micro_lesson_video": "微课视频",
    "coursewares": "课件",
    "lesson_plandesign": "教学设计",
    "learning_task": "学习任务单",
    "after_class_exercise": "课后练习",
}
KIND_OF_NAME = {name: code for code, name in KIND_NAMES.items()} | {"视频课程": "micro_lesson_video"}
TEXTBOOK_CODES = {"teachingmaterials", "tch_material", "assets_document"}

UUIDISH = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}")
PERIOD_NUMERALS = "一二三四五六七八九十"


@dataclass(frozen=True)
class Problem:
    """Something wrong with the catalogue or a file: the file, the resource, what."""

    file: str
    resource: str
    message: str

    def __str__(self) -> str:
        who = f"resource {self.resource}: " if self.resource else ""
        return f"{self.file}: {who}{self.message}"


class Bad(Exception):
    """A record that cannot be used; the message says why."""


@dataclass(frozen=True)
class Item:
    """One file the platform lists for a resource (a `ti_items` entry)."""

    format: str
    flag: str
    urls: tuple[str, ...]
    size: int | None
    md5: str | None
    encrypted: bool
    page_count: int | None  # a folder of page images: how many pages, when the platform says

    @property
    def name(self) -> str:
        """Return the file's name: the last part of its URL, decoded."""
        if not self.urls:
            return ""
        path = urllib.parse.urlsplit(self.urls[0]).path
        return urllib.parse.unquote(PurePosixPath(path).name)


@dataclass(frozen=True)
class Resource:
    """A resource of a lesson package (a video, a courseware…) or a textbook, with its files."""

    id: str
    kind: str  # micro_lesson_video, coursewares, …, textbook
    kind_name: str  # 微课视频, 课件, …, 电子教材
    title: str
    update_time: str
    items: tuple[Item, ...]
    period: str = ""


@dataclass(frozen=True)
class Package:
    """A lesson package (国家课), one or more 课时, or a textbook (教材) standing alone."""

    id: str
    title: str
    update_time: str
    file: str
    tags: dict[str, str]  # dimension -> name
    resources: tuple[Resource, ...]
    chapter_paths: tuple[tuple[str, ...], ...] = ()
    teachers: tuple[str, ...] = ()
    textbook_id: str = ""
    is_textbook: bool = False

    def changed_after(self, ms: int) -> bool:
        """Tell whether the package or any of its resources was updated after a time (ms since 1970)."""
        times = [self.update_time, *(r.update_time for r in self.resources)]
        return any(time_ms(t) > ms for t in times if t)


@dataclass
class Catalogue:
    """Everything read from a catalogue folder."""

    root: Path
    versions: dict[str, Any] = field(default_factory=dict)  # module -> module_version
    tags: dict[str, tuple[str, str]] = field(default_factory=dict)  # tag id -> (dimension, name)
    chapters: dict[str, str] = field(default_factory=dict)  # chapter id -> title
    textbook_titles: dict[str, str] = field(default_factory=dict)  # textbook id -> title
    packages: dict[str, Package] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: int = 0

    @property
    def version(self) -> str:
        """Return the catalogue's version: the lesson module's when known, else any module's."""
        if "national_lesson" in self.versions:
            return str(self.versions["national_lesson"])
        return ",".join(f"{m}:{v}" for m, v in sorted(self.versions.items()))

    def rel(self, path: Path) -> str:
        """Return a path as the operator knows it (relative to the catalogue folder)."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def time_ms(value: str) -> int:
    """Return a platform time ('2026-01-21T23:37:52.509+0800') as milliseconds since 1970 (0 when unreadable)."""
    text = value.strip()
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(dt.timestamp() * 1000)


def period_number(name: str) -> int | None:
    """Return the number of a 课时 name: 第一课时 -> 1, 第12课时 -> 12."""
    m = re.fullmatch(r"第(\d+|[一二三四五六七八九十]+)课时", name.strip())
    if not m:
        return None
    text = m.group(1)
    if text.isdigit():
        return int(text)
    if text == "十":
        return 10
    if text.startswith("十"):
        return 10 + PERIOD_NUMERALS.index(text[1]) + 1
    if len(text) == 2 and text.endswith("十"):
        return (PERIOD_NUMERALS.index(text[0]) + 1) * 10
    if len(text) == 3 and text[1] == "十":
        return (PERIOD_NUMERALS.index(text[0]) + 1) * 10 + PERIOD_NUMERALS.index(text[2]) + 1
    return PERIOD_NUMERALS.index(text) + 1 if len(text) == 1 else None


# ---------------------------------------------------------------- reading the folder


def read(root: Path) -> Catalogue:
    """Read every JSON file under root; what cannot be read becomes a Problem."""
    root = Path(root)
    cat = Catalogue(root)
    details: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(root.rglob("*.json")):
        if not path.is_file():
            continue
        cat.files += 1
        guess = path.stem if UUIDISH.fullmatch(path.stem) else ""
        try:
            doc = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            cat.problems.append(Problem(cat.rel(path), guess, f"is not valid JSON ({_short(exc)}); skipped"))
            continue
        except OSError as exc:
            cat.problems.append(Problem(cat.rel(path), guess, f"cannot be read ({exc.strerror}); skipped"))
            continue
        if isinstance(doc, dict) and "module_version" in doc:
            cat.versions[str(doc.get("module") or path.parent.name or "catalogue")] = doc["module_version"]
        elif isinstance(doc, dict) and isinstance(doc.get("hierarchies"), list):
            _read_tag_tree(cat, path, doc)
        elif _is_chapter_tree(doc):
            _read_chapters(cat, doc if isinstance(doc, list) else [doc])
        elif isinstance(doc, dict):
            details.append((path, doc))
        elif isinstance(doc, list) and all(isinstance(x, dict) for x in doc):
            details += [(path, x) for x in doc]
        else:
            cat.problems.append(Problem(cat.rel(path), guess, "is not a catalogue file this builder knows; skipped"))
    # Names first (tag tree, textbook titles), so that every record can be named whatever the file order.
    for _path, doc in details:
        if doc.get("resource_type_code") in TEXTBOOK_CODES and isinstance(doc.get("title"), str):
            cat.textbook_titles[str(doc.get("id"))] = doc["title"]
    failed = [p for p in (_read_record(cat, path, doc) for path, doc in details) if p is not None]
    # A package saved twice (a list record without files, and its detail) is fine when one of them reads.
    cat.problems += [p for p in failed if p.resource not in cat.packages]
    return cat


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 120 else text[:117] + "…"


def _is_chapter_tree(doc: Any) -> bool:
    nodes = doc if isinstance(doc, list) else [doc]
    return bool(nodes) and all(
        isinstance(n, dict) and "child_nodes" in n and "id" in n and "resource_type_code" not in n for n in nodes
    )


def _read_chapters(cat: Catalogue, nodes: list[Any]) -> None:
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("id"), str) and isinstance(node.get("title"), str):
            cat.chapters[node["id"]] = " ".join(node["title"].split())
        stack += node.get("child_nodes") or []


def _read_tag_tree(cat: Catalogue, path: Path, doc: dict[str, Any]) -> None:
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        tag_id, dim, name = node.get("tag_id"), node.get("tag_dimension_id"), node.get("tag_name")
        if isinstance(tag_id, str) and isinstance(dim, str):
            if dim not in KNOWN_DIMENSIONS:
                cat.problems.append(Problem(cat.rel(path), "", f"tag {tag_id} ({name}) has unknown dimension {dim!r}; "
                                            "ignored"))
            elif isinstance(name, str):
                cat.tags[tag_id] = (dim, name)
        for h in node.get("hierarchies") or []:
            if isinstance(h, dict):
                stack += h.get("children") or []


def _read_record(cat: Catalogue, path: Path, doc: dict[str, Any]) -> Problem | None:
    rid = str(doc.get("id") or "")
    code = doc.get("resource_type_code")
    relations = doc.get("relations")
    try:
        if not rid:
            raise Bad("has no id")
        package: Package | None
        if code == "national_lesson" or isinstance(relations, dict):
            package = _package(cat, path, doc)
        elif code in TEXTBOOK_CODES or code is None and _items(doc, rid):
            package = _textbook(cat, path, doc)
            if package is None:  # a textbook without files: a name for chapters and lessons, no lesson of its own
                return None
        else:
            raise Bad(f"is a {doc.get('resource_type_code_name') or code!s} ({code}), "
                      "not a lesson package or a textbook; skipped")
    except Bad as exc:
        return Problem(cat.rel(path), rid, str(exc))
    known = cat.packages.get(package.id)
    # The same package may be saved twice (a list record and its detail): the one with files wins,
    # then the newer.
    if known is None or (_has_files(package), package.update_time) >= (_has_files(known), known.update_time):
        cat.packages[package.id] = package
    return None


def _has_files(p: Package) -> bool:
    return any(r.items for r in p.resources)


def _title(doc: dict[str, Any]) -> str:
    title = doc.get("global_title")
    if isinstance(title, dict) and isinstance(title.get("zh-CN"), str) and title["zh-CN"].strip():
        return title["zh-CN"].strip()
    if isinstance(doc.get("title"), str) and doc["title"].strip():
        return str(doc["title"]).strip()
    raise Bad("has no title")


def _tags(cat: Catalogue, doc: dict[str, Any], rid: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    tag_list = doc.get("tag_list") or []
    if not isinstance(tag_list, list):
        raise Bad("tag_list is not a list")
    for t in tag_list:
        if not isinstance(t, dict):
            raise Bad("tag_list holds something that is not a tag")
        dim = t.get("tag_dimension_id")
        name = t.get("tag_name")
        if not isinstance(name, str) or not name:
            name = cat.tags.get(str(t.get("tag_id")), ("", ""))[1]
        if dim not in KNOWN_DIMENSIONS:
            raise Bad(f"unknown tag dimension {dim!r} (tag {t.get('tag_id') or name}); lesson skipped")
        if name:
            tags.setdefault(str(dim), name)
    return tags


def _items(doc: dict[str, Any], rid: str) -> tuple[Item, ...]:
    raw = doc.get("ti_items") or []
    if not isinstance(raw, list):
        raise Bad("ti_items is not a list")
    items = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict):
            raise Bad(f"ti_items[{i}] is not an object")
        urls = t.get("ti_storages") or []
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise Bad(f"ti_items[{i}].ti_storages is not a list of URLs")
        size = t.get("ti_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise Bad(f"ti_items[{i}].ti_size is not a number of bytes")
        md5 = t.get("ti_md5")
        if md5 is not None and not isinstance(md5, str):
            raise Bad(f"ti_items[{i}].ti_md5 is not text")
        md5 = md5.strip().lower() if md5 else None
        if md5 and not re.fullmatch(r"[0-9a-f]{32}", md5):
            raise Bad(f"ti_items[{i}].ti_md5 {md5!r} is not an md5")
        props = t["custom_properties"] if isinstance(t.get("custom_properties"), dict) else {}
        pages = None
        for req in props.get("requirements") or []:
            if isinstance(req, dict) and req.get("name") == "pagesize" and str(req.get("value", "")).isdigit():
                pages = int(req["value"])
        fmt = t.get("ti_format")
        if not fmt and urls:
            fmt = PurePosixPath(urllib.parse.urlsplit(urls[0]).path).suffix.lstrip(".")
        fmt = str(fmt or "").lower()
        items.append(Item(format=fmt, flag=str(t.get("ti_file_flag") or ""), urls=tuple(urls),
                          size=size or None, md5=md5 or None, encrypted=bool(props.get("encryption")),
                          page_count=pages))
    return tuple(items)


def _kind(doc: dict[str, Any]) -> str:
    code = doc.get("resource_type_code")
    if isinstance(code, str) and code:
        return code
    name = doc.get("resource_type_code_name")
    if isinstance(name, str) and name in KIND_OF_NAME:
        return KIND_OF_NAME[name]
    for t in doc.get("tag_list") or []:
        if isinstance(t, dict) and t.get("tag_dimension_id") == "bklx" and t.get("tag_name") in KIND_OF_NAME:
            return KIND_OF_NAME[t["tag_name"]]
    return str(name or "unknown")


def _package(cat: Catalogue, path: Path, doc: dict[str, Any]) -> Package:
    rid = str(doc["id"])
    title = _title(doc)
    tags = _tags(cat, doc, rid)
    relations = doc.get("relations")
    subs = relations.get("national_course_resource") if isinstance(relations, dict) else None
    if not isinstance(subs, list) or not subs:
        raise Bad("lesson package has no resources (relations.national_course_resource is empty); lesson skipped")
    resources = []
    for i, sub in enumerate(subs):
        if not isinstance(sub, dict) or not sub.get("id"):
            raise Bad(f"relations.national_course_resource[{i}] is not a resource with an id; lesson skipped")
        try:
            sub_tags = _tags(cat, sub, str(sub["id"]))
            kind = _kind(sub)
            resources.append(Resource(
                id=str(sub["id"]), kind=kind, kind_name=KIND_NAMES.get(kind, str(sub.get("resource_type_code_name")
                                                                                or kind)),
                title=_title(sub) if (sub.get("title") or sub.get("global_title")) else title,
                update_time=str(sub.get("update_time") or ""), items=_items(sub, str(sub["id"])),
                period=sub_tags.get("bkks", ""),
            ))
        except Bad as exc:
            raise Bad(f"sub-resource {sub['id']}: {exc}") from None
    resources = _assign_periods(resources, doc)
    chapter_paths = tuple(tuple(p.split("/")) for p in doc.get("chapter_paths") or [] if isinstance(p, str) and p)
    if not chapter_paths and isinstance(doc.get("chapter_ids"), list) and doc["chapter_ids"]:
        chapter_paths = (tuple(str(c) for c in doc["chapter_ids"]),)
    teachers = tuple(t["name"] for t in doc.get("teacher_list") or [] if isinstance(t, dict)
                     and isinstance(t.get("name"), str))
    textbook = doc.get("teachingmaterial_id") or next(iter(doc.get("teachmeterial_ids") or []), "")
    return Package(id=rid, title=title, update_time=str(doc.get("update_time") or ""), file=cat.rel(path),
                   tags=tags, resources=tuple(resources), chapter_paths=chapter_paths, teachers=teachers,
                   textbook_id=str(textbook or ""))


def _assign_periods(resources: list[Resource], doc: dict[str, Any]) -> list[Resource]:
    """Give every resource its 课时: its own bkks tag, else the package's structure, else its neighbours'."""
    periods = [r.period for r in resources]
    structure = doc.get("resource_structure")
    groups = structure.get("relations") if isinstance(structure, dict) else None
    for group in groups if isinstance(groups, list) else []:
        if not isinstance(group, dict) or not isinstance(group.get("title"), str):
            continue
        for ref in group.get("res_ref") or []:
            m = re.fullmatch(r"\$\.relations\.national_course_resource\[([\d,\s]+)\]", str(ref))
            for index in (int(x) for x in m.group(1).split(",") if x.strip()) if m else ():
                if index < len(periods) and not periods[index]:
                    periods[index] = group["title"]
    # A resource without a 课时 (the platform often leaves 课件 and 教学设计 untagged) belongs to the
    # 课时 of the resource before it in the package, or, at the start, to the first one after it.
    last = ""
    for i, p in enumerate(periods):
        if p:
            last = p
        elif last:
            periods[i] = last
    first = next((p for p in periods if p), "")
    periods = [p or first for p in periods]
    return [Resource(r.id, r.kind, r.kind_name, r.title, r.update_time, r.items, p)
            for r, p in zip(resources, periods, strict=True)]


def _textbook(cat: Catalogue, path: Path, doc: dict[str, Any]) -> Package | None:
    rid = str(doc["id"])
    title = _title(doc)
    items = _items(doc, rid)
    if not any(i.format == "pdf" for i in items):
        return None
    tags = _tags(cat, doc, rid)
    book = Resource(id=rid, kind="textbook", kind_name="电子教材", title=title,
                    update_time=str(doc.get("update_time") or ""), items=items)
    return Package(id=rid, title=title, update_time=book.update_time, file=cat.rel(path), tags=tags,
                   resources=(book,), is_textbook=True, textbook_id=rid)
