"""/mirror/: the box's active channels and blobs in the mirror layout, so any box is a mirror for its neighbours."""

from __future__ import annotations

from flask import Blueprint, Response, abort

from ..channel import ID_RE, MANIFEST, SIGNATURE
from . import current_box
from .media import send_blob

bp = Blueprint("mirror", __name__, url_prefix="/mirror")


@bp.route("/channels/<channel_id>/<name>", methods=["GET", "HEAD"])
def channel_file(channel_id: str, name: str) -> Response:
    """Serve an active channel's manifest or its signature, byte for byte."""
    if not ID_RE.fullmatch(channel_id) or name not in (MANIFEST, SIGNATURE):
        abort(404, description="no such channel file")
    data = current_box().channel_file(channel_id, name)
    if data is None:
        abort(404, description=f"this box does not hold channel {channel_id!r}")
    mimetype = "application/json" if name == MANIFEST else "text/plain"
    return Response(data, mimetype=mimetype, headers={"Cache-Control": "no-cache"})


@bp.route("/blobs/sha256/<prefix>/<name>", methods=["GET", "HEAD"])
def blob(prefix: str, name: str) -> Response:
    """Serve a blob at its mirror path, resumable with ranges and If-Range like /media/."""
    if name[:2] != prefix:
        abort(404, description="no such file")
    return send_blob(name, "application/octet-stream")
