"""/hub/api/uploads: resumable chunked uploads of lesson files to a hub (see hub/uploads.py).

The protocol, which static/upload.js speaks:

    POST   /hub/api/uploads          {"name", "size"}  -> 201 {"id", "offset": 0, "size", "url", "chunk"}
    HEAD   /hub/api/uploads/<id>                       -> Upload-Offset, Upload-Length
    GET    /hub/api/uploads/<id>                       -> the same, and JSON (with "result" once finished)
    PATCH  /hub/api/uploads/<id>     Upload-Offset: N, the chunk as the body (at most 8 MiB)
           -> 204 with the new Upload-Offset; 200 {"sha256", "size", "media_type", "kind", "name"} when
              the last byte is in (an empty PATCH at the end asks again); 415 when the content is not
              a video, PDF or image; 409 with the hub's Upload-Offset when N is not it
    DELETE /hub/api/uploads/<id>                       -> 204

A teacher or admin session is needed, and X-CSRF-Token on every change. On a box that is not a
hub every route answers 404.
"""

from __future__ import annotations

import threading
from typing import IO, Any

from flask import Blueprint, Response, abort, current_app, jsonify, request, url_for
from werkzeug.exceptions import ClientDisconnected, HTTPException
from werkzeug.routing import BuildError

from ..errors import ClassboxError, Conflict, InvalidInput, NotFound
from ..hub.uploads import (
    KEEP_FOR,
    MAX_CHUNK,
    HubFull,
    OffsetMismatch,
    StoredFile,
    TooLarge,
    UnsupportedContent,
    Upload,
    Uploads,
)
from . import current_box
from .auth import current_session, gate

bp = Blueprint("hub_uploads", __name__, url_prefix="/hub/api/uploads")

CLIENT_CHUNK = 4 * 1024 * 1024
_make_lock = threading.Lock()
_check_login = gate("teacher", "admin", login="hub.login")


def current_uploads() -> Uploads:
    """Return the hub's uploads, opened (and abandoned ones expired) at first use."""
    uploads = current_app.extensions.get("classbox_uploads")
    if uploads is None:
        with _make_lock:
            uploads = current_app.extensions.get("classbox_uploads")
            if uploads is None:
                box = current_box()
                hub = box.data.root / "hub"
                uploads = Uploads(hub / "uploads", hub / "files", box.config.max_upload_bytes)
                uploads.expire(KEEP_FOR)
                current_app.extensions["classbox_uploads"] = uploads
    return uploads  # type: ignore[no-any-return]


def _owner() -> str:
    session = current_session()
    assert session is not None  # the gate let the request in
    return session.account.name


@bp.before_request
def _hub_and_login_only() -> Any:
    box = current_box()
    if not box.config.is_hub:
        abort(404)
    # The gate answers JSON only under /api/; this API lives under /hub/api/, so it answers here.
    if not box.setup.done:
        return jsonify(error="the box is not set up yet; open /setup", code="setup_needed"), 403
    if current_session() is None:
        try:
            where = url_for("hub.login")
        except BuildError:
            where = "/hub/login"
        return jsonify(error=f"log in first at {where}", code="login_needed"), 401
    return _check_login()  # role and CSRF token


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _offset_headers(upload: Upload) -> dict[str, str]:
    return {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.size)}


def _stored_json(stored: StoredFile) -> dict[str, Any]:
    return {"sha256": stored.sha256, "size": stored.size, "media_type": stored.media_type,
            "kind": stored.kind, "name": stored.name}


@bp.post("")
def create() -> Any:
    """Declare an upload."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, 'send JSON {"name": ..., "size": ...}', "invalid_input")
    size = body.get("size")
    if type(size) is not int:
        raise InvalidInput("size: the file's size in bytes, a whole number", field="size")
    upload = current_uploads().create(str(body.get("name") or ""), size, _owner())
    url = url_for(".upload", upload_id=upload.id)
    response = jsonify(id=upload.id, name=upload.name, offset=upload.offset, size=upload.size, url=url,
                       chunk=CLIENT_CHUNK)
    response.headers.update({"Location": url, **_offset_headers(upload)})
    return response, 201


@bp.get("/<upload_id>")
def upload(upload_id: str) -> Any:
    """Tell how far an upload has come (HEAD: in headers only)."""
    uploads = current_uploads()
    found = uploads.status(upload_id, _owner())
    result = uploads.result(upload_id, _owner())
    response = jsonify(id=found.id, name=found.name, size=found.size, offset=found.offset, created=found.created,
                       result=_stored_json(result) if result else None)
    response.headers.update(_offset_headers(found))
    return response


@bp.patch("/<upload_id>")
def append(upload_id: str) -> Any:
    """Append one chunk at the offset given; finish the upload when it is complete."""
    raw_offset = request.headers.get("Upload-Offset", "")
    if not raw_offset.isdigit():
        return _error(400, "send the chunk's place in the file in the Upload-Offset header", "invalid_input")
    length = request.content_length
    if length is None:
        if request.headers.get("Transfer-Encoding"):
            return _error(411, "send the chunk with a Content-Length", "length_required")
        length = 0  # no length and no transfer coding: no body (an empty PATCH at the end asks for the result)
    if length > MAX_CHUNK:
        raise TooLarge(f"a chunk may be at most {MAX_CHUNK // (1024 * 1024)} MB")
    uploads = current_uploads()
    owner = _owner()
    offset = uploads.append(upload_id, int(raw_offset), _Body(request.stream), length, owner)
    found = uploads.status(upload_id, owner)
    if offset < int(raw_offset) + length:
        response = _error(400, f"the chunk ended after {offset - int(raw_offset)} of {length} bytes; "
                               f"resume at {offset}", "incomplete_chunk")
        response.headers.update(_offset_headers(found))
        return response
    if offset == found.size:
        stored = uploads.finish(upload_id, owner)
        response = jsonify(_stored_json(stored))
        response.headers.update(_offset_headers(found))
        return response
    return Response(status=204, headers=_offset_headers(found))


@bp.delete("/<upload_id>")
def discard(upload_id: str) -> Any:
    """Abandon an upload and delete its bytes."""
    current_uploads().discard(upload_id, _owner())
    return Response(status=204)


class _Body:
    """The request body as a plain stream: a client that hung up mid-chunk just ends it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def read(self, n: int) -> bytes:
        """Return up to n bytes, b"" at the end or when the client went away."""
        try:
            return self.stream.read(n)
        except ClientDisconnected:
            return b""


def _error(status: int, message: str, code: str) -> Response:
    response = jsonify(error=message, code=code)
    response.status_code = status
    return response


@bp.errorhandler(ClassboxError)
def _classbox_error(exc: ClassboxError) -> Response:
    status = 400
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, UnsupportedContent):
        status = 415
    elif isinstance(exc, TooLarge):
        status = 413
    elif isinstance(exc, HubFull):
        status = 507
    elif isinstance(exc, Conflict):
        status = 409
    if isinstance(exc, OffsetMismatch):  # the client resumes at the hub's offset
        response = jsonify(error=str(exc), code=exc.code, offset=exc.offset)
        response.status_code = status
        response.headers["Upload-Offset"] = str(exc.offset)
        return response
    return _error(status, str(exc), exc.code)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return _error(exc.code or 500, exc.description or exc.name, exc.name.lower().replace(" ", "_"))
