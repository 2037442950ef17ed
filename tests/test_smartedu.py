"""Channels built from the national platform's catalogue: `classbox channel build --from-smartedu`."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from classbox import channel, keys
from classbox.box import Box
from classbox.cli import main
from classbox.smartedu import catalogue
from classbox.smartedu.build import NEEDS_MP4
from classbox.smartedu.build import build as build_smartedu
from classbox.smartedu.files import Files

from .conftest import Publisher
from .netfaults import Fault, FaultProxy, nginx
from .smartedu_fixtures import (
    BOOK,
    COMPARE_VIDEO_2,
    PKG_COMPARE,
    PKG_COUNT,
    PLAN_1,
    VERSION,
    make_clip,
    md5,
    tiny_pdf,
    write_catalogue,
    write_json,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "smartedu"
TOKEN = "Bearer 0123456789abcdef"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def run(*args: Any) -> Result:
    return CliRunner().invoke(main, ["channel", "build", *map(str, args)], catch_exceptions=False)


def build_cli(cat: Path, files: Path | None, publisher: Publisher, out: Path, *extra: Any) -> Result:
    args: list[Any] = ["--from-smartedu", cat, "--key", publisher.private, "--out", out, *extra]
    if files is not None:
        args += ["--files", files]
    return run(*args)


def manifest(out: Path, publisher: Publisher) -> channel.Manifest:
    return channel.verify(out, "smartedu", keys.load_public(publisher.public), 16 << 20)


def lessons(out: Path, publisher: Publisher) -> dict[str, channel.Lesson]:
    return {lesson.id: lesson for lesson in manifest(out, publisher).lessons}


def test_builds_a_signed_channel_with_curriculum_path_periods_roles_and_provenance(
        tmp_path: Path, clip: bytes, publisher: Publisher) -> None:
    cat, files, _ = write_catalogue(tmp_path, clip)
    out = tmp_path / "mirror"
    result = build_cli(cat, files, publisher, out)
    assert result.exit_code == 0, result.output
    got = lessons(out, publisher)  # verify() checks the signature and every file's hash
    assert sorted(got) == sorted([f"{BOOK}.book", f"{PKG_COUNT}.p1", f"{PKG_COUNT}.p2",
                                  f"{PKG_COMPARE}.p1", f"{PKG_COMPARE}.p2"])

    first = got[f"{PKG_COUNT}.p1"]
    assert first.title == "1 数一数（第一课时）"
    assert first.section == "课程教学"
    assert dict(first.path) == {"stage": "小学", "grade": "一年级", "subject": "数学", "edition": "人教版",
                                "volume": "上册", "unit": "第一单元 准备课", "lesson": "1 数一数",
                                "period": "第一课时"}
    roles = [a.role for a in first.assets]
    assert roles == ["video", "courseware", "lesson_plan", "task_sheet", "exercise", "cover"]
    video = first.assets[0]
    assert video.blob.media_type == "video/mp4" and video.blob.size == len(clip)
    courseware = first.assets[1]
    assert courseware.blob.media_type == "application/pdf" and len(courseware.pages) == 2, "page images for the TV"
    prov = dict(first.provenance)
    assert prov["resource_id"] == PKG_COUNT and prov["update_time"] == "2025-09-01T10:00:00.000+0800"
    assert prov["catalogue_version"] == str(VERSION) and prov["platform"] == "国家中小学智慧教育平台"
    assert prov["teachers"] == "李老师" and prov["textbook"] == "义务教育教科书·数学一年级上册"
    # The 课件 and 教学设计 carry no 课时 tag: they go with the 课时 they follow.
    second = got[f"{PKG_COUNT}.p2"]
    assert [a.role for a in second.assets][:3] == ["video", "courseware", "lesson_plan"]
    assert second.assets[1].blob.sha256 != courseware.blob.sha256

    # 课时 from the package's resource_structure; the HLS-only video is skipped, the operator's MP4 used.
    compare1, compare2 = got[f"{PKG_COMPARE}.p1"], got[f"{PKG_COMPARE}.p2"]
    assert compare1.level("period") == "第一课时" and [a.role for a in compare1.assets] == ["task_sheet"]
    assert compare2.level("period") == "第二课时" and [a.role for a in compare2.assets] == ["video", "task_sheet"]

    book = got[f"{BOOK}.book"]
    assert [a.role for a in book.assets] == ["textbook", "cover"] and len(book.assets[0].pages) == 3
    assert dict(book.path)["grade"] == "一年级" and "lesson" not in dict(book.path)

    meta = manifest(out, publisher).meta
    assert meta["catalogue_version"] == str(VERSION)

    # The summary: lessons, and per kind present / missing / skipped with why.
    out_text = result.output
    assert "5 lessons (5 built, 0 unchanged since the last build), catalogue version 1760000000000" in out_text
    line = next(x for x in out_text.splitlines() if x.strip().startswith("微课视频"))
    assert line.split()[1:] == ["present", "3", "missing", "0", "skipped", "1"]
    assert f"1 × skipped: {NEEDS_MP4}" in out_text
    assert "superboard" not in out_text, "a 课件 with a PDF is present; its other formats are not counted"


def test_the_channel_installs_on_a_box_and_lists_by_grade_and_subject(
        tmp_path: Path, clip: bytes, publisher: Publisher, box: Box, client: Any) -> None:
    cat, files, _ = write_catalogue(tmp_path, clip)
    assert build_cli(cat, files, publisher, tmp_path / "mirror").exit_code == 0
    box.add_channel(tmp_path / "mirror", keys.load_public(publisher.public))
    doc = client.get("/api/v1/catalog", query_string={"grade": "一年级", "subject": "数学"}).get_json()
    assert doc["total"] == 5
    assert [f["value"] for f in doc["facets"]["period"]] == ["第一课时", "第二课时"]
    lesson = client.get(f"/api/v1/lessons/{PKG_COUNT}.p1").get_json()
    video = lesson["assets"][0]
    assert client.get(video["url"], headers={"Range": "bytes=0-11"}).data[4:8] == b"ftyp"
    pages = lesson["assets"][1]["pages"]
    assert client.get(pages[0]["url"]).data.startswith(b"\x89PNG")


def test_missing_files_are_counted_not_errors(tmp_path: Path, clip: bytes, publisher: Publisher) -> None:
    cat, files, _ = write_catalogue(tmp_path, clip)
    shutil.rmtree(files / f"{PKG_COUNT[:8]}-0000-4000-8000-000000000025")  # 第二课时's 课后练习
    (files / f"{COMPARE_VIDEO_2}" / "比多少2.mp4").unlink()
    result = build_cli(cat, files, publisher, tmp_path / "mirror")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("课后练习"))
    assert line.split()[1:] == ["present", "1", "missing", "1", "skipped", "0"]
    assert "1 × missing: not in the files folder (nor anything with its md5)" in result.output
    assert f"2 × skipped: {NEEDS_MP4}" in result.output
    got = lessons(tmp_path / "mirror", publisher)
    assert [a.role for a in got[f"{PKG_COUNT}.p2"].assets] == ["video", "courseware", "lesson_plan", "task_sheet",
                                                                 "cover"]


def test_a_file_is_found_by_md5_under_another_name(tmp_path: Path, clip: bytes, publisher: Publisher) -> None:
    cat, files, platform = write_catalogue(tmp_path, clip)
    assert not (files / PLAN_1).exists() and (files / "misc" / "教学设计-renamed.pdf").is_file()
    assert build_cli(cat, files, publisher, tmp_path / "mirror").exit_code == 0
    plan = next(a for a in lessons(tmp_path / "mirror", publisher)[f"{PKG_COUNT}.p1"].assets
                if a.role == "lesson_plan")
    assert plan.blob.size == len(platform.local["misc/教学设计-renamed.pdf"])


def test_bad_input_is_named_by_file_and_resource_and_the_rest_is_built(
        tmp_path: Path, clip: bytes, publisher: Publisher) -> None:
    cat, files, _ = write_catalogue(tmp_path, clip)
    good = json.loads((cat / "details" / f"{PKG_COUNT}.json").read_text(encoding="utf-8"))
    bad_ids = {}

    def variant(name: str, change: Any) -> str:
        doc = json.loads(json.dumps(good))
        rid = f"{name[:8].ljust(8, '0')}-0000-4000-8000-00000000bad0"
        doc["id"] = rid
        change(doc)
        write_json(cat / "details" / f"{rid}.json", doc)
        bad_ids[name] = rid
        return rid

    odd_tag = {"tag_id": "x1", "tag_name": "某某", "tag_dimension_id": "zxxfoo"}
    variant("dimensio", lambda d: d["tag_list"].append(odd_tag))
    variant("noresour", lambda d: d["relations"].update(national_course_resource=[]))
    truncated = cat / "details" / "2d8e6f3c-4b5a-4f7b-9c9a-8e3d4f506172.json"
    truncated.write_text(json.dumps(good, ensure_ascii=False)[:500], encoding="utf-8")
    (cat / "details" / "garbage.json").write_bytes(b"\xff\xfe not json")
    # A file in the folder whose md5 or size is not the catalogue's: that lesson is skipped.
    task = files / f"{PKG_COUNT[:8]}-0000-4000-8000-000000000024" / "pdf.pdf"
    task.write_bytes(tiny_pdf("something else"))
    result = build_cli(cat, files, publisher, tmp_path / "mirror")
    assert result.exit_code == 1, "bad input is an error"
    text = result.output
    assert "details/2d8e6f3c-4b5a-4f7b-9c9a-8e3d4f506172.json: resource 2d8e6f3c-4b5a-4f7b-9c9a-8e3d4f506172: " \
           "is not valid JSON" in text
    assert "details/garbage.json: is not valid JSON" in text
    assert (f"details/{bad_ids['dimensio']}.json: resource {bad_ids['dimensio']}: unknown tag dimension 'zxxfoo' "
            "(tag x1); lesson skipped") in text
    assert (f"details/{bad_ids['noresour']}.json: resource {bad_ids['noresour']}: lesson package has no resources"
            in text)
    assert f"{task}: resource {PKG_COUNT[:8]}-0000-4000-8000-000000000024: is {task.stat().st_size} bytes, " \
           f"the catalogue says" in text and "lesson 1 数一数（第二课时） skipped" in text
    assert "4 problems" not in text and "5 problems in the catalogue" in text
    got = lessons(tmp_path / "mirror", publisher)
    assert f"{PKG_COUNT}.p1" in got and f"{PKG_COUNT}.p2" not in got, "only the lesson with the bad file is skipped"
    assert f"{PKG_COMPARE}.p1" in got and f"{BOOK}.book" in got
    assert not any(bad in lesson_id for bad in bad_ids.values() for lesson_id in got)


def test_a_wrong_md5_is_named(tmp_path: Path, clip: bytes, publisher: Publisher) -> None:
    cat, files, _ = write_catalogue(tmp_path, clip)
    pdf = files / f"{PKG_COUNT[:8]}-0000-4000-8000-000000000014" / "pdf.pdf"
    original = pdf.read_bytes()
    data = bytearray(original)
    data[-8] ^= 1  # same size, different content
    pdf.write_bytes(bytes(data))
    result = build_cli(cat, files, publisher, tmp_path / "mirror")
    assert result.exit_code == 1
    assert (f"{pdf}: resource {PKG_COUNT[:8]}-0000-4000-8000-000000000014: has md5 {md5(bytes(data))}, "
            f"the catalogue says {md5(original)}; lesson 1 数一数（第一课时） skipped") in result.output


def test_a_rerun_on_an_updated_catalogue_copies_only_what_changed(
        tmp_path: Path, clip: bytes, publisher: Publisher) -> None:
    cat, files, _ = write_catalogue(tmp_path, clip)
    out = tmp_path / "mirror"
    assert build_cli(cat, files, publisher, out).exit_code == 0
    first = manifest(out, publisher)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "blobs").rglob("*") if p.is_file()}
    # The platform updates one 学习任务单.
    task_dir = files / f"{PKG_COUNT[:8]}-0000-4000-8000-000000000014"
    new_task = tiny_pdf("task 1, revised")
    doc = json.loads((cat / "details" / f"{PKG_COUNT}.json").read_text(encoding="utf-8"))
    sub = next(s for s in doc["relations"]["national_course_resource"] if s["id"].endswith("000000000014"))
    sub["ti_items"][0].update(ti_md5=md5(new_task), ti_size=len(new_task))
    sub["update_time"] = doc["update_time"] = "2025-10-08T09:00:00.000+0800"
    write_json(cat / "details" / f"{PKG_COUNT}.json", doc)
    (task_dir / "pdf.pdf").write_bytes(new_task)
    write_json(cat / "version" / "data_version.json", {"module": "national_lesson", "module_version": VERSION + 1,
                                                       "urls": ""})
    result = build_cli(cat, files, publisher, out)
    assert result.exit_code == 0, result.output
    assert "files: 1 copied" in result.output, result.output
    second = manifest(out, publisher)
    assert second.version > first.version
    assert second.meta["catalogue_version"] == str(VERSION + 1)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "no blob was written again"
    task = next(a for a in {lesson.id: lesson for lesson in second.lessons}[f"{PKG_COUNT}.p1"].assets
                if a.role == "task_sheet")
    assert task.blob.size == len(new_task)


def test_since_rebuilds_only_what_changed(tmp_path: Path, clip: bytes, publisher: Publisher) -> None:
    cat, files, _ = write_catalogue(tmp_path, clip)
    out = tmp_path / "mirror"
    result = build_cli(cat, files, publisher, out, "--since", VERSION)
    assert result.exit_code == 1 and "holds no earlier build of channel 'smartedu'" in result.output
    assert not out.exists() or not (out / "channels").exists(), "nothing written"
    assert build_cli(cat, files, publisher, out).exit_code == 0
    before = lessons(out, publisher)
    # The operator saves only what changed since the last catalogue version: 比多少, now with a new title.
    changed = tmp_path / "changed"
    doc = json.loads((cat / "details" / f"{PKG_COMPARE}.json").read_text(encoding="utf-8"))
    doc["global_title"] = {"zh-CN": "2 比多少（修订）"}
    doc["update_time"] = "2025-11-02T08:00:00.000+0800"
    write_json(changed / "details" / f"{PKG_COMPARE}.json", doc)
    write_json(changed / "data_version.json", {"module": "national_lesson", "module_version": VERSION + 5, "urls": ""})
    result = build_cli(changed, files, publisher, out, "--since", VERSION)
    assert result.exit_code == 0, result.output
    assert "5 lessons (2 built, 3 unchanged since the last build)" in result.output
    after = lessons(out, publisher)
    assert sorted(after) == sorted(before)
    assert after[f"{PKG_COMPARE}.p1"].title == "2 比多少（修订）（第一课时）"
    assert after[f"{PKG_COUNT}.p1"] == before[f"{PKG_COUNT}.p1"]
    # A --since later than the catalogue the channel was built from would miss changes: refused.
    result = build_cli(changed, files, publisher, out, "--since", VERSION + 100)
    assert result.exit_code == 1 and "would be missed" in result.output
    result = build_cli(changed, files, publisher, out, "--since", "yesterday")
    assert result.exit_code == 1 and "--since 'yesterday' is neither a catalogue version" in result.output


@pytest.fixture
def platform_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real nginx standing in for the platform's file hosts: it answers only with the operator's header."""
    root = tmp_path / "site"
    root.mkdir()
    extra = f'location / {{ if ($http_authorization != "{TOKEN}") {{ return 403; }} }}'
    with nginx(root, tmp_path / "nginx", extra) as url:
        yield url, root


def _publish(site_root: Path, platform: Any) -> None:
    for path, data in platform.files.items():
        target = site_root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def test_downloads_with_the_operators_header_resumably_and_checked(
        tmp_path: Path, clip: bytes, publisher: Publisher, platform_site: tuple[str, Path]) -> None:
    url, site_root = platform_site
    big = clip * 40  # a video of a few MB, so that the link can be cut in the middle of it
    third = len(big) // 3
    proxy = FaultProxy(int(url.rsplit(":", 1)[1]), lambda n: Fault(cut_after=third))  # every answer cut at 1/3
    try:
        cat, files, platform = write_catalogue(tmp_path, big, hosts=(proxy.url, url))
        _publish(site_root, platform)
        out = tmp_path / "mirror"
        # Without the header the platform refuses: the files are missing, which by itself is not an error.
        result = build_cli(cat, None, publisher, out, "--download")
        assert "download failed" in result.output and "HTTP 403" in result.output
        assert result.exit_code == 1 and "no lesson could be built" in result.output
        before = proxy.bytes_to_client
        result = build_cli(cat, None, publisher, out, "--download", "--header", f"Authorization: {TOKEN}")
        assert result.exit_code == 0, result.output
        assert "0 copied" in result.output and "downloaded" in result.output
        # The progress line counts the bytes as they come, and ends on the summary's figure.
        fetched = re.findall(r"\r\[[#.]+\] (\d+)/3 课 已下载 ([\d.]+) MB", result.output)
        assert fetched[-1] == ("3", re.search(r"16 downloaded \(([\d.]+) MB\)", result.output)[1]), fetched
        got = lessons(out, publisher)
        assert len(got) == 5
        assert [a.role for a in got[f"{PKG_COMPARE}.p2"].assets] == ["task_sheet"], "the MP4 only the operator had"
        videos = [got[f"{PKG_COUNT}.p{n}"].assets[0] for n in (1, 2)]
        assert [v.blob.size for v in videos] == [len(big), len(big) + 16]
        # Each video came in three or more pieces, resumed where the cut left it: the wire carried
        # hardly more than the files (headers, and the small files whole).
        wire = proxy.bytes_to_client - before
        assert proxy.connections >= 6
        assert wire < 1.02 * sum(len(d) for d in platform.files.values()), (wire, proxy.connections)
        assert len(got[f"{PKG_COUNT}.p1"].assets[1].pages) == 2
        assert not list((out / ".classbox-build" / "partial").glob("*.part"))
        # A file the platform serves with another md5 is named, and its lesson skipped.
        bad = next(p for p in platform.files if "0000000014.t/" in p and p.endswith("/pdf.pdf"))
        (site_root / bad.lstrip("/")).write_bytes(tiny_pdf("tampered task!!"))
        result = build_cli(cat, None, publisher, tmp_path / "mirror2", "--download", "--header",
                           f"Authorization: {TOKEN}")
        assert result.exit_code == 1
        assert f"{proxy.url}{bad}: resource {PKG_COUNT[:8]}-0000-4000-8000-000000000014: " in result.output
        assert "lesson 1 数一数（第一课时） skipped" in result.output
    finally:
        proxy.close()


def test_headers_are_checked_and_never_made_up(tmp_path: Path, publisher: Publisher) -> None:
    (tmp_path / "cat").mkdir()
    result = run("--from-smartedu", tmp_path / "cat", "--key", publisher.private, "--out", tmp_path / "o",
                 "--download", "--header", "Authorization Bearer x")
    assert result.exit_code == 1 and "expected 'Name: value'" in result.output
    result = run("--from-smartedu", tmp_path / "cat", "--key", publisher.private, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "--files FILES_DIR, --download, or both" in result.output
    result = run("--from-smartedu", tmp_path / "cat", "--key", publisher.private, "--out", tmp_path / "o",
                 "--files", tmp_path / "nope")
    assert result.exit_code == 1 and "no such folder" in result.output


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="the platform's reference samples are not beside the project")
def test_the_platforms_own_samples(tmp_path: Path, publisher: Publisher) -> None:
    cat = catalogue.read(REFERENCE)
    assert not cat.problems, [str(p) for p in cat.problems]
    packages = cat.packages
    detail = packages["57d37f35-8b72-4c7d-b76d-948422b61b28"]
    assert detail.title == "大青树下的小学"
    assert [detail.tags[d] for d in ("zxxxd", "zxxnj", "zxxxk", "zxxbb", "zxxcc")] == \
        ["小学", "三年级", "语文", "统编版", "上册"]
    assert [(r.kind_name, r.period) for r in detail.resources] == [("微课视频", "第一课时"), ("课件", "第一课时")]
    kinds = ["微课视频", "课件", "教学设计", "学习任务单", "课后练习"]
    untagged = packages["95b463d2-2a14-e987-6437-394e53b15197"]  # 课时 only in resource_structure
    assert [r.kind_name for r in untagged.resources] == kinds * 2
    assert [r.period for r in untagged.resources] == ["第一课时"] * 5 + ["第二课时"] * 5
    periods = packages["a48085cc-72d5-4872-b51c-289a3938cb09"]  # untagged 课件/教学设计 between tagged ones
    assert [r.period for r in periods.resources] == ["第一课时"] * 5 + ["第二课时"] * 5
    assert [r.kind_name for r in packages["26d77680-d05e-47cd-aa9b-3c3d84ac2eb2"].resources] == kinds
    book = packages["bdc00134-465d-454b-a541-dcd0cec4d86e"]
    assert book.is_textbook and book.title.endswith("道德与法治一年级上册")
    # Building with no files: every video is HLS only, so each is reported as needing an MP4.
    (tmp_path / "files").mkdir()
    summary = build_smartedu(REFERENCE, keys.load_private(publisher.private), tmp_path / "out",
                             Files(tmp_path / "out", tmp_path / "files"))
    assert summary.manifest is None and summary.lessons_built == 0
    assert summary.skipped["微课视频"] == 5 and summary.reasons["微课视频"][f"skipped: {NEEDS_MP4}"] == 5
    assert set(summary.kinds()) == {*kinds, "电子教材"}
