"""/api/v1/rooms: each classroom's state for its screens, commands from paired phones, pairing itself."""

from __future__ import annotations

import io
import json
from typing import Any

import segno
from flask import Blueprint, Response, jsonify, request, url_for

from ..errors import InvalidInput
from . import current_box
from .tv import box_address

bp = Blueprint("rooms", __name__, url_prefix="/api/v1/rooms")

PAIR_COOKIE = "classbox_remote"
WAIT_LIMIT = 25.0
MAX_NUMBER = 2**53  # the largest whole number a phone's JavaScript holds exactly; no position or step comes near


def _classroom():  # type: ignore[no-untyped-def]
    return current_box().classroom


def _state_json(state: Any, **extra: Any) -> Response:
    return jsonify({**state.as_dict(_classroom().clock()), **extra})


@bp.get("")
def rooms():  # type: ignore[no-untyped-def]
    """List the rooms of this box."""
    return jsonify(rooms=_classroom().rooms())


@bp.get("/<room>/state")
def state(room: str):  # type: ignore[no-untyped-def]
    """Return the room's state; with after=VERSION, wait up to `wait` seconds for a newer one."""
    after = request.args.get("after")
    if request.args.get("screen"):
        _classroom().saw(room, request.args["screen"], request.args.get("kind", "tv"), request.remote_addr or "")
    if after is None:
        return _state_json(_classroom().current(room))
    try:
        version, wait = int(after), min(float(request.args.get("wait", WAIT_LIMIT)), WAIT_LIMIT)
    except ValueError:
        raise InvalidInput("after and wait must be numbers") from None
    current, waited = _classroom().wait(room, version, wait)
    # A screen that could not wait (every waiting slot taken) asks again after this many seconds.
    return _state_json(current, retry_after=0 if waited else 1.0)


@bp.get("/<room>/today")
def today(room: str):  # type: ignore[no-untyped-def]
    """Return the room's period now, the next one and today's timetable."""
    classroom = _classroom()
    classroom.current(room)  # 404 for an unknown room
    result = classroom.today(room)

    def slot(s: Any) -> dict[str, Any] | None:
        if s is None:
            return None
        return {"date": s.date.isoformat(), "period": s.period, "start": s.start.strftime("%H:%M"),
                "end": s.end.strftime("%H:%M"), "subject": s.subject, "lesson": s.lesson, "title": s.title,
                "ready": s.ready, "timed": s.timed, "note": s.note}

    return jsonify(now=slot(result.now), next=slot(result.next), today=[slot(s) for s in result.today])


@bp.get("/<room>/pairing")
def pairing(room: str):  # type: ignore[no-untyped-def]
    """Return what a TV shows so a phone can pair: the room code and the remote's address."""
    classroom = _classroom()
    classroom.current(room)
    return jsonify(code=classroom.code(room), url=_remote_url(room, classroom.code(room)))


@bp.get("/<room>/qr.svg")
def qr(room: str):  # type: ignore[no-untyped-def]
    """Return a QR code (SVG) that opens the remote for this room, already paired by its code."""
    classroom = _classroom()
    classroom.current(room)
    out = io.BytesIO()
    segno.make(_remote_url(room, classroom.code(room)), error="m").save(out, kind="svg", scale=8, border=2,
                                                                           dark="#000", light="#fff")
    response = Response(out.getvalue(), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "no-store"
    return response


def _remote_url(room: str, code: str) -> str:
    return box_address() + url_for("remote.remote", room=room, code=code)


@bp.post("/<room>/pair")
def pair(room: str):  # type: ignore[no-untyped-def]
    """Pair this phone with the room by its code, until the end of the day."""
    body = _body()
    token, expires = _classroom().pair(room, body.get("code", ""), request.remote_addr or "")
    response = jsonify(paired=True, room=room, expires=expires)
    response.set_cookie(PAIR_COOKIE, token, expires=expires, httponly=True, samesite="Lax", path="/")
    return response


@bp.post("/<room>/commands")
def command(room: str):  # type: ignore[no-untyped-def]
    """Apply a command from a paired remote: {client, n, cmd, args}."""
    classroom = _classroom()
    if classroom.paired_room(request.cookies.get(PAIR_COOKIE)) != room:
        classroom.current(room)  # an unknown room is a 404 before a 403
        return jsonify(error="this phone is not paired with this room: enter the code shown on the TV",
                       code="not_paired"), 403
    body = _body()
    state = classroom.command(room, body.get("client"), body.get("n"), body.get("cmd"), body.get("args") or {})
    return _state_json(state)


@bp.post("/<room>/report")
def report(room: str):  # type: ignore[no-untyped-def]
    """Take a screen's playback position (it may have stalled) or the end of the video."""
    body = _body()
    lesson = body.get("lesson")
    if not isinstance(lesson, str):
        raise InvalidInput("lesson: which lesson the screen is playing")
    return _state_json(_classroom().report(room, lesson, body.get("position"), bool(body.get("ended"))))


def _body() -> dict[str, Any]:
    # Strict JSON: NaN, Infinity or a number past MAX_NUMBER would end up in the room's position and its log.
    body = None
    if request.is_json:
        try:
            body = json.loads(request.get_data(), parse_int=lambda s: _finite(int(s)),
                              parse_float=lambda s: _finite(float(s)), parse_constant=lambda s: _finite(float(s)))
        except ValueError:
            pass
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _finite(value: int | float) -> int | float:
    if not -MAX_NUMBER <= value <= MAX_NUMBER:  # NaN too
        raise InvalidInput(f"numbers must be finite and between -{MAX_NUMBER} and {MAX_NUMBER}")
    return value
