"""The hub link over HTTP: a hub's key and mirror, a box's notice endpoint, and the box's /admin/hub page.

On a hub: `GET /hub/key.pub` and `GET /hub/mirror/...` (the teaching points' channels, read-only,
resumable like /mirror/). On every box: `POST /api/v1/notify`, signed by the hub, starts a sync
from it; `/admin/hub` shows the link and the enrolment the hub needs.
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO

from flask import Blueprint, Response, abort, jsonify, render_template, request

from .. import hublink
from ..channel import MANIFEST
from ..errors import ClassboxError, SignatureRejected
from ..hub.points import make_enrolment
from ..hub.publish import mirror_root
from . import current_box, current_sync
from .auth import back, current_session, failed, gate, private, told
from .media import send_blob
from .tv import box_address

bp = Blueprint("link", __name__)

ADMIN_ENDPOINTS = {"link.admin_hub", "link.enrolment", "link.sync_from_hub"}
MAX_NOTICE_BODY = 4096


@bp.before_request
def _admin_only() -> Any:
    if request.endpoint in ADMIN_ENDPOINTS:
        return gate("admin")()
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    return private(response) if request.endpoint in ADMIN_ENDPOINTS else response


# ------------------------------------------------------------------ on a hub


def _hub_only() -> None:
    if not current_box().config.is_hub:
        abort(404, description="this box is not a hub")


@bp.get("/hub/key.pub")
def hub_key():  # type: ignore[no-untyped-def]
    """Serve the hub's public key, the one its teaching points' channels are signed with."""
    _hub_only()
    return Response(current_box().public_key_pem, mimetype="text/plain", headers={"Cache-Control": "no-cache"})


def _open_blob(name: str) -> BinaryIO | None:
    """Open a file of the hub's mirror by its sha256."""
    return hublink.open_mirror_blob(mirror_root(current_box()), name)


@bp.route("/hub/mirror/channels/<channel_id>/<name>", methods=["GET", "HEAD"])
def hub_channel_file(channel_id: str, name: str) -> Response:
    """Serve a teaching point's channel manifest or signature, byte for byte, validated by its content."""
    _hub_only()
    data = hublink.mirror_channel_file(mirror_root(current_box()), channel_id, name)
    if data is None:
        abort(404, description=f"this hub publishes no channel file {channel_id[:80]!r}/{name[:40]!r}")
    mimetype = "application/json" if name == MANIFEST else "text/plain"
    response = Response(data, mimetype=mimetype, headers={"Cache-Control": "no-cache"})
    response.set_etag(hashlib.sha256(data).hexdigest())
    response.make_conditional(request)  # 304 when If-None-Match names it
    return response


@bp.route("/hub/mirror/blobs/sha256/<prefix>/<name>", methods=["GET", "HEAD"])
def hub_blob(prefix: str, name: str) -> Response:
    """Serve a file of the hub's mirror, resumable with ranges and If-Range like /mirror/."""
    _hub_only()
    if name[:2] != prefix:
        abort(404, description="no such file")
    return send_blob(name, "application/octet-stream", opener=_open_blob)


# ------------------------------------------------------------------ on a teaching point's box


@bp.post("/api/v1/notify")
def notify():  # type: ignore[no-untyped-def]
    """Take the hub's signed notice that new lessons are up, and sync from the hub now."""
    if (request.content_length or 0) > MAX_NOTICE_BODY:
        abort(413, description=f"a notice is at most {MAX_NOTICE_BODY} bytes")
    try:
        target = hublink.accept_notice(current_box(), request.headers, request.method, request.path,
                                       request.get_data(cache=False))
    except SignatureRejected as exc:
        return jsonify(error=str(exc), code=exc.code), 403
    current_sync().request_now(sources=[target.source], channels=[target.channel])
    return jsonify(accepted=True), 202


def _enrolment() -> str:
    box = current_box()
    settings = box.setup.settings()
    return make_enrolment(box.box_id, settings.box_name, settings.school, box.public_key_pem, box_address())


@bp.get("/admin/hub")
def admin_hub():  # type: ignore[no-untyped-def]
    """Show the hub set up for the box, the state of the link and the enrolment to hand to the hub."""
    session = current_session()
    assert session is not None
    return render_template("admin_hub.html", link=hublink.link_state(current_box()), enrolment=_enrolment(),
                           csrf=session.csrf, notice=told())


@bp.get("/admin/hub/enrolment.json")
def enrolment():  # type: ignore[no-untyped-def]
    """Download the enrolment, for the hub's register of teaching points."""
    name = f"classbox-enrolment-{current_box().short_id}.json"
    return Response(_enrolment(), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.post("/admin/hub/sync")
def sync_from_hub():  # type: ignore[no-untyped-def]
    """Follow the hub (trusting its key the first time) and sync from it now."""
    box = current_box()
    try:
        channel_id = hublink.follow_hub(box)
    except ClassboxError as exc:
        return failed(exc, "link.admin_hub")
    source = hublink.hub_source(box.setup.settings())
    worker = current_sync()
    if channel_id is None or source is None:
        return back("link.admin_hub", "error", "没有设置中心校：设置时没有填写中心校地址和密钥指纹。")
    if not worker.running:
        return back("link.admin_hub", "error", "已信任中心校的密钥，但同步服务没有运行，无法开始同步。")
    worker.request_now(sources=[source], channels=[channel_id])
    return back("link.admin_hub", "ok", f"已开始从中心校同步（频道 {channel_id}），进度见概况页。")
