"""POST /api/v1/control/...: what the `classbox` command asks of the server that owns the data directory.

One process owns a data directory. While `serve` runs, `classbox channel add`,
`subscribe`, `scrub` and `pin` cannot open it, so they send their request here.
Only a caller that can read the data directory's serve.json (mode 0600, written by
`serve`) knows the token these routes require.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request

from .. import keys
from ..errors import InvalidInput
from . import current_box

bp = Blueprint("control", __name__, url_prefix="/api/v1/control")

TOKEN_HEADER = "X-Classbox-Control"


@bp.before_request
def _require_token() -> None:
    expected = current_app.config.get("CONTROL_TOKEN")
    given = request.headers.get(TOKEN_HEADER, "")
    if not expected or not hmac.compare_digest(given.encode(), str(expected).encode()):
        abort(403, description="the control API is for the classbox command on the box itself")


def _body(*allowed: str) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown field {', '.join(unknown)}; use {', '.join(allowed)}")
    return body


def _key(body: dict[str, Any]) -> Any:
    return keys.parse_public(str(body["trust"]).encode(), "trust") if body.get("trust") else None


@bp.post("/channels")
def add_channel():  # type: ignore[no-untyped-def]
    """Install a channel from a folder on this machine, all or nothing."""
    body = _body("root", "trust", "channel")
    if not isinstance(body.get("root"), str):
        raise InvalidInput("root: the channel folder is missing")
    result = current_box().add_channel(Path(body["root"]), _key(body), body.get("channel"))
    return jsonify(result.as_dict())


@bp.post("/subscriptions")
def subscribe():  # type: ignore[no-untyped-def]
    """Follow a channel or part of it."""
    body = _body("channel", "trust", "filters")
    filters = body.get("filters") or {}
    if not isinstance(body.get("channel"), str) or not isinstance(filters, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in filters.values()):
        raise InvalidInput("channel must be a string and filters an object of string lists")
    box = current_box()
    box.subscribe(body["channel"], filters, _key(body))
    return jsonify(subscriptions={c: box.filters(c) for c in box.subscribed()})


@bp.post("/scrub")
def scrub():  # type: ignore[no-untyped-def]
    """Re-hash the store now and report the damaged files."""
    box = current_box()
    return jsonify(checked=len(box.store.blobs()), damaged=box.scrub())


@bp.post("/pins")
def pin():  # type: ignore[no-untyped-def]
    """Pin or unpin a lesson."""
    body = _body("lesson", "pinned")
    if not isinstance(body.get("lesson"), str) or not isinstance(body.get("pinned", True), bool):
        raise InvalidInput("lesson must be a string and pinned true or false")
    box = current_box()
    box.pin(body["lesson"], body.get("pinned", True))
    return jsonify(pinned=box.pinned())
