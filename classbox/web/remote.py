"""The phone remote: a page with big buttons that drives one room's screens."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from .tv import page_address

bp = Blueprint("remote", __name__)


@bp.get("/remote")
def remote():  # type: ignore[no-untyped-def]
    """Serve the remote; ?room=…&code=… (from the TV's QR code) pairs it at once."""
    return render_template("remote.html", room=request.args.get("room", ""), code=request.args.get("code", ""),
                           box_url=page_address("remote"))
