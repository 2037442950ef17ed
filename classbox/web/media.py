"""GET /media/<sha256>: blobs for the TVs, with byte ranges, served without pinning a worker thread.

A player asks for `Range: bytes=0-` and then reads as slowly as it plays. If a
worker thread copied the file, eight TVs would hold all eight threads and the
ninth would stall. Instead the file is seeked to the range's start and handed to
the server's wsgi.file_wrapper with the range's Content-Length: waitress then
sends it from its I/O loop and the worker thread is free at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

from flask import Blueprint, Response, abort, request

from ..store import is_sha256
from . import current_box

bp = Blueprint("media", __name__)

BLOCK = 256 * 1024
RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


class Unsatisfiable(Exception):
    """The range asked for lies wholly beyond the end of the file."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the (first, last) byte of a single Range header, None to send the whole file."""
    if not header:
        return None
    m = RANGE_RE.fullmatch(header.strip())
    if not m or m.groups() == ("", ""):
        return None  # several ranges, another unit or bad syntax: RFC 9110 lets us send it all
    first, last = m.groups()
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable
    return start, min(int(last), size - 1) if last else size - 1


def etag_listed(header: str, etag: str) -> bool:
    """Tell whether an If-None-Match header lists etag (weak comparison) or is '*'."""
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def _bounded(f: BinaryIO, length: int) -> Iterator[bytes]:
    try:
        while length > 0:
            chunk = f.read(min(BLOCK, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        f.close()


@bp.route("/media/<name>", methods=["GET", "HEAD"])
def blob(name: str) -> Response:
    """Serve a blob by its sha256 with its media type, ranges, ETag and long caching."""
    box = current_box()
    media_type = box.catalog.media_type(name)
    response = send_blob(name, media_type or "application/octet-stream")
    if media_type is not None and response.status_code in (200, 206):
        box.note_played(name)
    return response


def send_blob(name: str, mimetype: str, opener: Callable[[str], BinaryIO | None] | None = None) -> Response:
    """Answer a request for a blob (of the store, or one opener finds): ranges, conditional requests, HEAD."""
    f = (opener or current_box().store.open)(name) if is_sha256(name) else None
    if f is None:
        abort(404, description=f"no file {name[:80]!r} on this box")
    size = os.fstat(f.fileno()).st_size
    etag = f'"{name}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "public, max-age=31536000, immutable",
    }
    if etag_listed(request.headers.get("If-None-Match", ""), etag):
        f.close()
        return Response(status=304, headers=headers)
    if_range = request.headers.get("If-Range")
    try:
        rng = byte_range(request.headers.get("Range"), size) if if_range in (None, etag) else None
    except Unsatisfiable:
        f.close()
        return Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = rng if rng else (0, size - 1)
    length = end - start + 1 if size else 0
    status = 206 if rng else 200
    if rng:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD":
        f.close()
        response = Response(status=status, headers=headers, content_type=mimetype)
    else:
        f.seek(start)
        wrapper = request.environ.get("wsgi.file_wrapper")
        # waitress's wrapper stops at Content-Length (its prepare()); a plain PEP 3333 one reads to EOF.
        body = wrapper(f, BLOCK) if wrapper is not None and hasattr(wrapper, "prepare") else _bounded(f, length)
        response = Response(body, status=status, headers=headers, content_type=mimetype, direct_passthrough=True)
    response.headers["Content-Length"] = str(length)
    return response
