"""The web app: one blueprint per audience, errors translated once here."""

from __future__ import annotations

import logging
import secrets

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from ..box import Box
from ..config import PACKAGE_DIR, Config
from ..errors import ChannelRejected, ClassboxError, Conflict, NotFound
from ..sync.worker import SyncWorker
from . import counters

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)


def build_app(config: Config | None = None) -> Flask:
    """Open the box and build the Flask app around it."""
    config = config or Config.from_env()
    app = Flask(
        "classbox",
        template_folder=str(PACKAGE_DIR / "templates"),
        static_folder=str(PACKAGE_DIR / "static"),
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    box = Box(config)
    app.extensions["classbox"] = box
    app.extensions["classbox_sync"] = SyncWorker(box)  # started by `serve`, never here
    counters.install(app)  # app.extensions["classbox_counters"]: requests, bytes sent, in flight

    from . import admin, api, control, hub, hub_uploads, link, media, mirror, ops, remote, reports, rooms, setup, tv

    app.config["CONTROL_TOKEN"] = secrets.token_urlsafe(32)
    for module in (admin, api, control, hub, link, media, mirror, ops, remote, reports, rooms, setup, tv):
        app.register_blueprint(module.bp)
    app.register_blueprint(admin.api)
    app.register_blueprint(hub_uploads.bp)

    app.after_request(_security_headers)
    app.register_error_handler(ClassboxError, _classbox_error)
    app.register_error_handler(HTTPException, _http_error)
    return app


def current_box() -> Box:
    """Return the box of the app handling this request."""
    return current_app.extensions["classbox"]  # type: ignore[no-any-return]


def current_sync() -> SyncWorker:
    """Return the sync worker of this app."""
    return current_app.extensions["classbox_sync"]  # type: ignore[no-any-return]


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/hub/api/", "/-/", "/media/", "/mirror/"))


def _security_headers(response):  # type: ignore[no-untyped-def]
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _classbox_error(exc: ClassboxError):  # type: ignore[no-untyped-def]
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
    if _wants_json():
        extra = {"reason": exc.reason} if isinstance(exc, ChannelRejected) else {}
        return jsonify(error=str(exc), code=exc.code, **extra), status
    return render_template("error.html", status=status, message=str(exc)), status


MESSAGES_ZH = {404: "没有找到这个页面", 405: "不支持这种请求方式", 400: "请求有误", 500: "盒子内部出错了"}


def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
    status = exc.code or 500
    if _wants_json():
        return jsonify(error=exc.description, code=exc.name.lower().replace(" ", "_")), status
    return render_template("error.html", status=status, message=MESSAGES_ZH.get(status, exc.name)), status
