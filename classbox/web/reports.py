"""On a hub: teaching points' boxes report what was played (signed by each box's key), and teachers export it."""

from __future__ import annotations

import json
import sys
import threading
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request

from .. import keys, signing
from ..errors import InvalidInput, KeyFileError, SignatureRejected
from ..hub.points import Points
from ..hub.reports import Reports
from . import current_box
from .auth import gate

bp = Blueprint("reports", __name__)

MAX_REPORT_BYTES = 5 * 1024 * 1024
CSV_DAYS = 7  # the export's default: the last week
_make_lock = threading.Lock()


def reports_of(app: Flask) -> Reports:
    """Return the hub's reports, made on first use under <data>/hub/reports."""
    reports = app.extensions.get("classbox_reports")
    if reports is None:
        with _make_lock:
            reports = app.extensions.get("classbox_reports")
            if reports is None:
                reports = Reports(app.extensions["classbox"].data.root / "hub" / "reports")
                app.extensions["classbox_reports"] = reports
    return reports  # type: ignore[no-any-return]


def _refused(message: str, code: str) -> tuple[Response, int]:
    return jsonify(error=message, code=code), 403


@bp.post("/api/v1/reports")
def receive() -> Any:
    """Take a batch of a registered box's log and its snapshot; answer the high-water mark."""
    box = current_box()
    if not box.config.is_hub:
        abort(404)
    if (request.content_length or 0) > MAX_REPORT_BYTES:
        abort(413, description=f"a report is at most {MAX_REPORT_BYTES // (1024 * 1024)} MB; send fewer events")
    try:
        sender = signing.sender_of(_signed_headers())
    except SignatureRejected as exc:
        return _refused(str(exc), exc.code)
    point = Points(box.state).get(sender)
    if point is None:
        return _refused("this box is not registered on the hub; give the hub's admin its enrolment", "not_registered")
    body = request.stream.read(MAX_REPORT_BYTES + 1)
    if len(body) > MAX_REPORT_BYTES:
        abort(413, description=f"a report is at most {MAX_REPORT_BYTES // (1024 * 1024)} MB; send fewer events")
    try:
        key = keys.parse_public(point.public_key.encode(), f"registered key of {sender}")
        # No max_skew: a box's clock may be far off, and a replayed batch stores nothing twice.
        signing.verify_request(key, _signed_headers(), "POST", request.path, body)
    except (SignatureRejected, KeyFileError) as exc:
        return _refused(str(exc), exc.code)
    try:
        batch = json.loads(body, parse_constant=_no_constant, parse_int=_whole)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the report is not JSON") from None
    return jsonify(high_water=reports_of(current_app).ingest(point, batch))


def _signed_headers() -> dict[str, str]:
    return {name: request.headers.get(name, "") for name in (signing.SENDER, signing.TIME, signing.SIGNATURE)}


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _whole(text: str) -> int:
    # A whole number no float can hold would make the checks of seq and time (math.isfinite) raise.
    value = int(text)
    if abs(value) > sys.float_info.max:
        raise ValueError(f"{text[:20]}… is too large a number")
    return value


@bp.get("/hub/points/<box_id>/played.csv")
def played_csv(box_id: str) -> Any:
    """Download what a point played per day, room and lesson (?from=&to=YYYY-MM-DD, default the last week)."""
    box = current_box()
    if not box.config.is_hub:
        abort(404)
    refused = gate("teacher", "admin", login="hub.login")()
    if refused is not None:
        return refused
    Points(box.state).require(box_id)
    today = date.today()
    first = request.args.get("from") or (today - timedelta(days=CSV_DAYS - 1)).isoformat()
    last = request.args.get("to") or today.isoformat()
    text = reports_of(current_app).csv(box_id, first, last)
    name = f"played-{box_id}-{first}-{last}.csv"
    return Response(text.encode("utf-8"), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
