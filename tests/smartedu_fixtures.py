"""A small catalogue of our own in the national platform's format, and the files it lists.

The shapes follow what the platform publishes (tag tree, chapter tree, data_version.json, lesson
package details with relations.national_course_resource and ti_items, textbook details); the
content is made up here: 人教版 一年级 数学 上册, two lesson packages and the e-textbook.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conftest import make_video

VERSION = 1760000000000  # module_version: ms since 1970, like the platform's
HOSTS = ("https://r1-ndr-private.ykt.cbern.com.cn", "https://r2-ndr-private.ykt.cbern.com.cn")

TM = "7a1e6d52-9b3c-4f08-8d21-3c5e0f6a9b10"  # the textbook the packages belong to (教材)
BOOK = "5c0f2a9e-1d47-4b6b-a3f2-7e9d8c6b5a41"  # the e-textbook (电子教材) with its PDF
PKG_COUNT = "0b6e4c1a-2f38-4d59-9a7e-6c1b2d3e4f50"  # 1 数一数: two 课时, tagged
PKG_COMPARE = "1c7f5d2b-3a49-4e6a-8b8f-7d2c3e4f5061"  # 2 比多少: two 课时 by resource_structure, HLS video
PLAN_1 = "0b6e4c1a-0000-4000-8000-000000000013"
COMPARE_VIDEO_2 = "1c7f5d2b-0000-4000-8000-000000000021"
UNIT1, LESSON1, LESSON2 = "a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002", \
    "a0000000-0000-4000-8000-000000000003"

TAGS = [("zxxxd", "e7bbb2de-0590-11ed-9c79-92fc3b3249d5", "小学"),
        ("zxxnj", "e7bbd296-0590-11ed-9c79-92fc3b3249d5", "一年级"),
        ("zxxxk", "6a74a8f2-0772-11ed-ac74-092ab92074e6", "数学"),
        ("zxxbb", "44bee6a2-54e6-11ed-9c34-850ba61fa9f4", "人教版"),
        ("zxxcc", "ff8080814371757b014390f883db0453", "上册")]


def tiny_pdf(text: str) -> bytes:
    """A small, valid one-page PDF."""
    body = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream"]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer << /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


def tiny_png(seed: int) -> bytes:
    """A small, valid PNG whose colour depends on seed."""
    raw = b"".join(b"\x00" + bytes([seed % 256, (seed * 7) % 256, (seed * 13) % 256]) * 8 for _ in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@dataclass
class Platform:
    """The files of the catalogue: what the platform would serve, by URL path, and where they go locally."""

    hosts: tuple[str, ...] = HOSTS
    files: dict[str, bytes] = field(default_factory=dict)  # URL path (after the host) -> bytes
    local: dict[str, bytes] = field(default_factory=dict)  # FILES_DIR relative path -> bytes

    def item(self, rid: str, name: str, data: bytes | None, fmt: str, flag: str, **extra: Any) -> dict[str, Any]:
        path = f"/edu_product/esp/assets/{rid}.t/zh-CN/1700000000000/transcode/{name}"
        item: dict[str, Any] = {"ti_storage": f"cs_path:${{ref-path}}{path}",
                                "ti_storages": [f"{h}{path}" for h in self.hosts],
                                "ti_file_flag": flag, "ti_is_source_file": False, "ti_format": fmt,
                                "custom_properties": extra.pop("custom_properties", {}), **extra}
        if data is not None:
            item.update(ti_md5=md5(data), ti_size=len(data))
            self.files[path] = data
        return item

    def folder(self, rid: str, pages: list[bytes]) -> dict[str, Any]:
        path = f"/edu_product/esp/assets/{rid}.t/zh-CN/1700000000000/transcode/image"
        for n, page in enumerate(pages, 1):
            self.files[f"{path}/{n}.jpg"] = page
        return {"ti_md5": "", "ti_size": 0, "ti_storage": f"cs_path:${{ref-path}}{path}",
                "ti_storages": [f"{h}{path}" for h in self.hosts],
                "ti_file_flag": "image", "ti_format": "folder",
                "custom_properties": {"requirements": [{"name": "pagesize", "type": "QUOTA",
                                                        "value": str(len(pages))}]}}


def _tag_list(extra: list[tuple[str, str, str]] = ()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    return [{"tag_id": i, "tag_name": n, "tag_dimension_id": d, "order_num": k}
            for k, (d, i, n) in enumerate([*TAGS, *extra])]


def _sub(rid: str, code: str, name: str, title: str, items: list[dict[str, Any]], period: str | None,
         update: str = "2025-09-01T10:00:00.000+0800") -> dict[str, Any]:
    tags = [{"tag_id": "5036342730", "tag_name": period, "tag_dimension_id": "bkks", "order_num": 0}] if period else []
    tags.append({"tag_id": "50203637", "tag_name": name, "tag_dimension_id": "bklx", "order_num": 3})
    return {"id": rid, "global_title": {"zh-CN": title}, "resource_type_code": code, "resource_type_code_name": name,
            "title": name, "update_time": update, "tag_list": tags, "ti_items": items, "status": "ONLINE",
            "custom_properties": {}}


def write_catalogue(root: Path, video: bytes, update: str = "2025-09-01T10:00:00.000+0800",
                    version: int = VERSION, hosts: tuple[str, ...] = HOSTS) -> tuple[Path, Path, Platform]:
    """Write CATALOG_DIR and FILES_DIR under root; return them and the platform's files."""
    cat, files = root / "catalog", root / "files"
    platform = Platform(hosts)
    write_json(cat / "version" / "data_version.json",
               {"module": "national_lesson", "module_version": version,
                "urls": "https://s-file-1.ykt.cbern.com.cn/zxx/ndrs/national_lesson/teachingmaterials/part_100.json"})
    # The tag tree: 小学 → 一年级 → 数学 → 人教版 → 上册 → 新教材.
    node: dict[str, Any] = {"tag_id": "5136342961", "tag_dimension_id": "zxxxjjc", "tag_name": "新教材",
                            "hierarchies": None, "ext": {"has_res": True}}
    for dim, tid, name in reversed(TAGS):
        node = {"tag_id": tid, "tag_dimension_id": dim, "tag_name": name, "ext": {},
                "hierarchies": [{"hierarchy_name": "x", "ext": {}, "children": [node]}]}
    write_json(cat / "tags" / "national_lesson_tag.json",
               {"tag_path": "2RC4Xgwn", "hierarchies": [{"hierarchy_name": "学段", "ext": {}, "children": [node]}]})
    write_json(cat / "trees" / f"{TM}.json", [
        {"id": UNIT1, "title": "第一单元  准备课", "child_nodes": [
            {"id": LESSON1, "title": "1 数一数", "child_nodes": []},
            {"id": LESSON2, "title": "2 比多少", "child_nodes": []}]}])
    write_json(cat / "teachingmaterials" / "part_100.json", [
        {"id": TM, "title": "义务教育教科书·数学一年级上册", "resource_type_code": "teachingmaterials",
         "resource_type_code_name": "教材", "tag_list": _tag_list(), "ti_items": [], "update_time": update}])

    # 1 数一数: two 课时, each with a video (MP4 on the platform), 课件 with page images, 教学设计,
    # 学习任务单 and 课后练习; the 课件 and 教学设计 carry no 课时 tag, as on the platform.
    subs = []
    for n, period in ((1, "第一课时"), (2, "第二课时")):
        vid, cw, lp, ts, ex = (f"0b6e4c1a-0000-4000-8000-0000000000{n}{k}" for k in range(1, 6))
        clip = video if n == 1 else video + b"\0" * 16  # two different files
        subs += [
            _sub(vid, "micro_lesson_video", "微课视频", f"数一数（{period}）", [
                platform.item(vid, f"video-{n}.mp4", clip, "mp4", "source"),
                platform.item(vid, f"video-{n}-1080p.m3u8", b"#EXTM3U\n", "m3u8", "href",
                              custom_properties={"encryption": "drm"}),
                platform.item(vid, "thumbnail.png", tiny_png(n), "png", "thumbnail_1")], period, update),
            _sub(cw, "coursewares", "课件", f"数一数（{period}）", [
                platform.folder(cw, [tiny_png(10 * n + 1), tiny_png(10 * n + 2)]),
                platform.item(cw, "pdf.pdf", tiny_pdf(f"courseware {n}"), "pdf", "pdf"),
                platform.item(cw, "document.superboard", b"SB" * 50, "superboard", "superboard")], None, update),
            _sub(lp, "lesson_plandesign", "教学设计", f"数一数（{period}）", [
                platform.item(lp, "pdf.pdf", tiny_pdf(f"plan {n}"), "pdf", "pdf")], None, update),
            _sub(ts, "learning_task", "学习任务单", f"数一数（{period}）", [
                platform.item(ts, "pdf.pdf", tiny_pdf(f"task {n}"), "pdf", "pdf")], period, update),
            _sub(ex, "after_class_exercise", "课后练习", f"数一数（{period}）", [
                platform.item(ex, "pdf.pdf", tiny_pdf(f"exercise {n}"), "pdf", "pdf")], period, update),
        ]
    write_json(cat / "details" / f"{PKG_COUNT}.json", _package(PKG_COUNT, "1 数一数", LESSON1, subs, update))

    # 2 比多少: the platform offers the video only as encrypted HLS; 课时 come from resource_structure.
    subs2 = []
    for n in (1, 2):
        vid, ts = (f"1c7f5d2b-0000-4000-8000-0000000000{n}{k}" for k in (1, 4))
        subs2 += [
            _sub(vid, "micro_lesson_video", "微课视频", "比多少", [
                platform.item(vid, f"v{n}.m3u8", b"#EXTM3U\n", "m3u8", "href",
                              custom_properties={"encryption": "drm"})],
                None, update),
            _sub(ts, "learning_task", "学习任务单", "比多少", [
                platform.item(ts, "pdf.pdf", tiny_pdf(f"compare task {n}"), "pdf", "pdf")], None, update)]
    compare = _package(PKG_COMPARE, "2 比多少", LESSON2, subs2, update)
    compare["resource_structure"] = {"relations": [
        {"id": "lesson_1", "title": "第一课时", "res_ref": ["$.relations.national_course_resource[0,1]"]},
        {"id": "lesson_2", "title": "第二课时", "res_ref": ["$.relations.national_course_resource[2,3]"]}]}
    write_json(cat / "details" / f"{PKG_COMPARE}.json", compare)

    # The e-textbook: its PDF, page images and cover.
    book_pages = [tiny_png(100 + i) for i in range(3)]
    write_json(cat / "tch_material" / "details" / f"{BOOK}.json", {
        "id": BOOK, "title": "义务教育教科书·数学一年级上册", "resource_type_code": "assets_document",
        "update_time": update, "tag_list": _tag_list([("zxxxjjc", "5136342961", "新教材")]),
        "ti_items": [platform.folder(BOOK, book_pages),
                     platform.item(BOOK, "义务教育教科书 数学 一年级 上册_1700000000000.pdf", tiny_pdf("book"),
                                   "pdf", ""),
                     platform.item(BOOK, "cover.png", tiny_png(99), "png", "")]})

    # The files folder: most files as FILES/<resource id>/<name>; one only findable by its md5.
    for path, data in platform.files.items():
        rid = path.split("/assets/")[1].split(".t/")[0]
        rest = path.split("/transcode/")[1]
        if rest.endswith(".m3u8"):
            continue  # an operator has no use for a playlist of encrypted segments
        platform.local[f"{rid}/{rest}"] = data
    moved = f"{PLAN_1}/pdf.pdf"  # 1 数一数's 教学设计 of the first 课时
    platform.local["misc/教学设计-renamed.pdf"] = platform.local.pop(moved)
    # 比多少 第二课时: the operator has an MP4 rendition of their own.
    platform.local[f"{COMPARE_VIDEO_2}/比多少2.mp4"] = video
    for rel, data in platform.local.items():
        (files / rel).parent.mkdir(parents=True, exist_ok=True)
        (files / rel).write_bytes(data)
    return cat, files, platform


def _package(pid: str, title: str, chapter: str, subs: list[dict[str, Any]], update: str) -> dict[str, Any]:
    return {"id": pid, "global_title": {"zh-CN": title}, "title": title, "resource_type_code": "national_lesson",
            "resource_type_code_name": "国家课", "update_time": update, "status": "ONLINE",
            "tag_list": [{"tag_id": "502036371442", "tag_name": "课程包", "tag_dimension_id": "bklx", "order_num": 6},
                         *_tag_list([("zxxxjjc", "5136342961", "新教材")])],
            "chapter_ids": [UNIT1, chapter], "chapter_paths": [f"{UNIT1}/{chapter}"],
            "teachmeterial_ids": [TM], "teachingmaterial_id": TM,
            "teacher_list": [{"id": "t1", "name": "李老师", "intro": "一级教师"}],
            "relations": {"national_course_resource": subs}}


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")


def make_clip(path: Path) -> bytes:
    """A real short MP4 (ffmpeg), as bytes."""
    make_video(path, seconds=2)
    return path.read_bytes()
