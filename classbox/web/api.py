"""The box's JSON API, version 1: the catalogue and its lessons."""

from __future__ import annotations

import ipaddress
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request, url_for

from .. import keys
from ..catalog import FACETS, Entry
from ..channel import Asset, Blob
from ..config import PACKAGE_DIR
from ..errors import KeyFileError
from . import current_box, current_sync

bp = Blueprint("api", __name__, url_prefix="/api/v1")

CATALOG_PARAMS = (*FACETS, "q")


def _media(blob: Blob) -> dict[str, Any]:
    return {
        "url": url_for("media.blob", name=blob.sha256),
        "sha256": blob.sha256,
        "size": blob.size,
        "media_type": blob.media_type,
    }


def _asset(asset: Asset) -> dict[str, Any]:
    return {
        "role": asset.role,
        "name": asset.name,
        **_media(asset.blob),
        "pages": [_media(p) for p in asset.pages],
        "pause_points": [{"at": p.at, "prompt": p.prompt} for p in asset.pause_points],
    }


def lesson_summary(entry: Entry) -> dict[str, Any]:
    """Return what a list of lessons shows of one."""
    lesson = entry.lesson
    cover = next((a for a in lesson.assets if a.role == "cover"), None)
    return {
        "id": lesson.id,
        "title": lesson.title,
        "section": lesson.section,
        "path": dict(lesson.path),
        "channel": entry.channel,
        "roles": sorted({a.role for a in lesson.assets}),
        "cover": url_for("media.blob", name=cover.blob.sha256) if cover else None,
    }


@bp.get("/openapi.json")
def openapi():  # type: ignore[no-untyped-def]
    """Serve the OpenAPI description of this API (classbox/openapi.json)."""
    return Response((PACKAGE_DIR / "openapi.json").read_bytes(), mimetype="application/json")


@bp.get("/catalog")
def catalog():  # type: ignore[no-untyped-def]
    """Browse lessons by section and curriculum path, or search their titles with q=."""
    unknown = sorted(set(request.args) - set(CATALOG_PARAMS))
    if unknown:
        abort(400, description=f"unknown parameter {', '.join(unknown)}; use {', '.join(CATALOG_PARAMS)}")
    filters = {k: v for k, v in request.args.items() if k in FACETS and v}
    result = current_box().catalog.browse(filters, request.args.get("q", ""))
    return jsonify(
        total=len(result.entries),
        filters=filters,
        lessons=[lesson_summary(e) for e in result.entries],
        facets={k: [{"value": v, "count": n} for v, n in values] for k, values in result.facets.items()},
    )


@bp.get("/lessons/<lesson_id>")
def lesson(lesson_id: str):  # type: ignore[no-untyped-def]
    """Return one lesson with its assets, their media URLs, pages and pause points."""
    entry = current_box().catalog.lesson(lesson_id)
    if entry is None:
        abort(404, description=f"no lesson {lesson_id!r} on this box")
    return jsonify({**lesson_summary(entry), "assets": [_asset(a) for a in entry.lesson.assets]})


@bp.get("/sync")
def sync_status():  # type: ignore[no-untyped-def]
    """Report the sync state, progress, last error and success, and the last 20 runs."""
    return jsonify(current_sync().status())


@bp.post("/sync")
def sync_now():  # type: ignore[no-untyped-def]
    """Start a sync now, outside the windows; optional JSON: sources, channels, trust (loopback only)."""
    worker = current_sync()
    if not worker.running:
        abort(503, description="the sync worker is not running")
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    unknown = sorted(set(body) - {"sources", "channels", "trust"})
    if unknown:
        abort(400, description=f"unknown field {', '.join(unknown)}; use sources, channels, trust")
    lists = {}
    for name in ("sources", "channels"):
        value = body.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            abort(400, description=f"{name} must be a list of strings")
        lists[name] = value
    trust = None
    if body.get("trust") is not None:
        # Pinning a publisher key decides what the box will ever accept: only from this machine.
        if not ipaddress.ip_address(request.remote_addr or "0.0.0.0").is_loopback:
            abort(403, description="trust may only be given from the box itself")
        try:
            trust = keys.parse_public(str(body["trust"]).encode(), "trust")
        except KeyFileError as exc:
            abort(400, description=str(exc))
    worker.request_now(lists["sources"], lists["channels"], trust)
    return jsonify(accepted=True, status=worker.status()), 202
