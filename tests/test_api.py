"""The catalogue API: browse by section and curriculum path, search titles, one lesson."""

from __future__ import annotations

from pathlib import Path

import pytest

from classbox import channel, keys
from classbox.box import Box

from .conftest import Publisher, write_source


@pytest.fixture
def filled(tmp_path: Path, box: Box, publisher: Publisher) -> Box:
    channel.build(write_source(tmp_path / "src", lessons=5), keys.load_private(publisher.private), tmp_path / "m")
    box.add_channel(tmp_path / "m", keys.load_public(publisher.public))
    return box


def test_browse_facets_follow_the_curriculum(client, filled: Box) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/api/v1/catalog").get_json()
    assert doc["total"] == 5
    assert doc["facets"]["section"] == [{"value": "课程教学", "count": 5}]
    assert [f["value"] for f in doc["facets"]["grade"]] == ["一年级", "二年级"]
    doc = client.get("/api/v1/catalog", query_string={"section": "课程教学", "grade": "二年级"}).get_json()
    assert doc["total"] == 2
    assert {lesson["path"]["subject"] for lesson in doc["lessons"]} == {"数学"}
    assert [f["value"] for f in doc["facets"]["subject"]] == ["数学"]
    assert [f["value"] for f in doc["facets"]["grade"]] == ["一年级", "二年级"], "a facet ignores its own filter"


def test_search_titles_by_chinese_substring(client, filled: Box) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/api/v1/catalog", query_string={"q": "地人"}).get_json()
    assert [lesson["title"] for lesson in doc["lessons"]] == ["天地人", "天地人 4"]
    assert client.get("/api/v1/catalog", query_string={"q": "物理"}).get_json()["total"] == 0


def test_unknown_parameter_is_named(client, filled: Box) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/catalog?colour=red")
    assert r.status_code == 400
    assert "unknown parameter colour" in r.get_json()["error"]


def test_lesson_has_assets_with_media_urls(client, filled: Box) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/api/v1/lessons/test-lesson-1").get_json()
    assert doc["title"] == "长度单位" and doc["path"]["grade"] == "二年级"
    video, sheet = doc["assets"]
    assert video["role"] == "video" and video["url"] == f"/media/{video['sha256']}"
    assert video["pause_points"] == [{"at": 2.0, "prompt": "请同学们读一读"}]
    assert [p["url"] for p in sheet["pages"]] == [f"/media/{p['sha256']}" for p in sheet["pages"]]
    assert client.get(video["url"]).status_code == 200


def test_unknown_lesson_is_404_json(client, filled: Box) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/lessons/nope")
    assert r.status_code == 404 and r.is_json
    assert "no lesson 'nope'" in r.get_json()["error"]


def test_lesson_missing_a_file_is_not_listed(client, filled: Box) -> None:  # type: ignore[no-untyped-def]
    entry = filled.catalog.lesson("test-lesson-0")
    filled.store.path(entry.lesson.assets[1].pages[0].sha256).unlink()  # type: ignore[union-attr]
    filled.catalog.reload()
    assert client.get("/api/v1/lessons/test-lesson-0").status_code == 404
    assert client.get("/api/v1/catalog").get_json()["total"] == 4


def test_health_and_version(client, filled: Box) -> None:  # type: ignore[no-untyped-def]
    health = client.get("/-/health").get_json()
    assert health["lessons"] == 5 and health["channels"] == 1
    assert health["disk_free_bytes"] > 0 and health["uptime_s"] >= 0
    assert client.get("/-/version").get_json()["classbox"] == health["version"]


def test_pages_say_what_went_wrong_in_chinese(client, filled: Box) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "没有找到这个页面" in r.get_data(as_text=True)
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
