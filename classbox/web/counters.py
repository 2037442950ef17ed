"""Serving counters: requests by method and status class, body bytes sent, requests in flight, media.

A WSGI middleware around the app. A request is counted when the server closes its
response (PEP 3333: it always does, finished or abandoned), so a video streamed for
forty minutes counts once, with every byte sent, and is "in flight" until then.

Media is not copied by a worker thread: media.py hands the file to waitress's
wsgi.file_wrapper, and waitress sends it from its I/O loop only when the response *is*
that wrapper (an isinstance check). Wrapping such a response would pin a worker
thread per TV, so the app is given a subclass of waitress's wrapper instead, which
counts what waitress reports sent (skip) and reports when waitress closes it. Every
other response is wrapped in an iterable that counts chunks as they are yielded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask import Flask
from waitress.buffers import ReadOnlyFileBasedBuffer

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CODES = ("1xx", "2xx", "3xx", "4xx", "5xx")

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


@dataclass(frozen=True)
class ServingSnapshot:
    """The counters at one moment, since the app was built."""

    requests: dict[tuple[str, str], int]  # (method, status class such as "4xx") -> finished requests
    response_bytes: int
    in_flight: int
    media_requests: int
    media_response_bytes: int

    def by_code(self) -> dict[str, int]:
        """Return finished requests per status class, every class present."""
        out = dict.fromkeys(CODES, 0)
        for (_method, code), n in self.requests.items():
            out[code] += n
        return out


class Counters:
    """WSGI middleware counting every request the app answers; cheap and safe from any thread."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._bytes = 0
        self._in_flight = 0
        self._media = 0
        self._media_bytes = 0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        exchange = _Exchange(self, method if method in METHODS else "other",
                             environ.get("PATH_INFO", "").startswith("/media/"))
        with self._lock:
            self._in_flight += 1
        if environ.get("wsgi.file_wrapper") is ReadOnlyFileBasedBuffer:
            environ["wsgi.file_wrapper"] = CountedFileWrapper

        def counted_start_response(status: str, headers: list[tuple[str, str]],
                                   exc_info: _ExcInfo | None = None, /) -> Any:
            exchange.status = status
            write = start_response(status, headers, exc_info)

            def counted_write(data: bytes) -> Any:
                exchange.sent += len(data)
                return write(data)

            return counted_write

        try:
            body = self.app(environ, counted_start_response)
        except BaseException:
            exchange.status = "500"  # what the server answers an app that raises
            exchange.finish()
            raise
        if isinstance(body, CountedFileWrapper):
            body.exchange = exchange
            return body
        return _CountedSized(body, exchange) if hasattr(body, "__len__") else _Counted(body, exchange)

    def _finish(self, exchange: _Exchange) -> None:
        status = exchange.status or "500"
        code = f"{status[0]}xx" if status[:1] in ("1", "2", "3", "4", "5") else "5xx"
        key = (exchange.method, code)
        with self._lock:
            if exchange.done:
                return  # closed twice: by the task and by the channel it failed to hand over to
            exchange.done = True
            self._in_flight -= 1
            self._requests[key] = self._requests.get(key, 0) + 1
            self._bytes += exchange.sent
            if exchange.media:
                self._media += 1
                self._media_bytes += exchange.sent

    def snapshot(self) -> ServingSnapshot:
        """Return the counters now."""
        with self._lock:
            return ServingSnapshot(dict(self._requests), self._bytes, self._in_flight, self._media,
                                   self._media_bytes)


def install(app: Flask) -> Counters:
    """Count every request the app answers; keep the counters in app.extensions["classbox_counters"]."""
    counters = Counters(app.wsgi_app)
    app.wsgi_app = counters  # type: ignore[method-assign]
    app.extensions["classbox_counters"] = counters
    return counters


class _Exchange:
    """One request on its way: its method, status and the body bytes sent so far."""

    __slots__ = ("counters", "method", "media", "status", "sent", "done")

    def __init__(self, counters: Counters, method: str, media: bool) -> None:
        self.counters = counters
        self.method = method
        self.media = media
        self.status: str | None = None
        self.sent = 0
        self.done = False

    def finish(self) -> None:
        """Count the request (once, however often it is called)."""
        self.counters._finish(self)


class _Counted:
    """The app's response body, counting the bytes of each chunk as it is yielded."""

    def __init__(self, body: Iterable[bytes], exchange: _Exchange) -> None:
        self._body = body
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        exchange = self._exchange
        for chunk in self._body:
            exchange.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        """Close the app's body, then count the request."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._exchange.finish()


class _CountedSized(_Counted):
    """A counted body that keeps the length of the app's (waitress sets Content-Length from len 1)."""

    def __len__(self) -> int:
        return len(self._body)  # type: ignore[arg-type]


class CountedFileWrapper(ReadOnlyFileBasedBuffer):  # type: ignore[misc]
    """waitress's wsgi.file_wrapper, counting the bytes waitress's I/O loop sends from it."""

    exchange: _Exchange | None = None

    def skip(self, numbytes: int, allow_prune: int = 0) -> None:
        """Advance past bytes sent (how waitress's channel consumes the file), and count them."""
        super().skip(numbytes, allow_prune)
        if self.exchange is not None:
            self.exchange.sent += numbytes

    def get(self, numbytes: int = -1, skip: bool = False) -> bytes:
        """Read bytes to send; count them when they are consumed at once."""
        data: bytes = super().get(numbytes, skip)
        if skip and self.exchange is not None:
            self.exchange.sent += len(data)
        return data

    def __next__(self) -> bytes:
        # Iterated by the task thread instead when waitress cannot size the file.
        data: bytes = super().__next__()
        if self.exchange is not None:
            self.exchange.sent += len(data)
        return data

    next = __next__

    def close(self) -> None:
        """Close the file, then count the request."""
        try:
            super().close()
        finally:
            if self.exchange is not None:
                self.exchange.finish()
