"""POST /api/v1/control/<action>: what the `classbox` command asks of the server that owns the data directory.

One process owns a data directory. While `serve` runs, commands such as
`classbox channel add`, `subscribe`, `scrub`, `pin` and `room` cannot open it, so
they send their request here (see classbox/actions.py). Only a caller that can
read the data directory's serve.json (mode 0600, written by `serve`) knows the
token these routes require.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, current_app, jsonify, request

from .. import actions
from . import current_box

bp = Blueprint("control", __name__, url_prefix="/api/v1/control")

TOKEN_HEADER = "X-Classbox-Control"


@bp.before_request
def _require_token() -> None:
    expected = current_app.config.get("CONTROL_TOKEN")
    given = request.headers.get(TOKEN_HEADER, "")
    if not expected or not hmac.compare_digest(given.encode(), str(expected).encode()):
        abort(403, description="the control API is for the classbox command on the box itself")


@bp.post("/<action>")
def run(action: str):  # type: ignore[no-untyped-def]
    """Run one action on the box and return its answer."""
    return jsonify(actions.run(current_box(), action, request.get_json(silent=True)))
