"""Who is asking: the setup gate, login sessions, roles and CSRF tokens, for every page that changes the box.

A logged-in browser holds an opaque session id in an HttpOnly, SameSite=Lax cookie; the
session (kept in memory by the box) carries the CSRF token that every state-changing request
must send back, in the form field `csrf_token` or the header `X-CSRF-Token`. Forms shown before
login (setup, login) use a double-submit token: a random cookie the form must repeat.
"""

from __future__ import annotations

import hmac
import secrets
import urllib.parse
from collections.abc import Callable
from typing import Any

from flask import Response, abort, g, jsonify, redirect, request, url_for

from ..accounts import Session
from ..errors import ClassboxError
from . import current_box

SESSION_COOKIE = "classbox_session"
FORM_COOKIE = "classbox_form"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def current_session() -> Session | None:
    """Return this request's live session, if its browser is logged in."""
    if "session" not in g:
        g.session = current_box().sessions.get(request.cookies.get(SESSION_COOKIE))
    return g.session  # type: ignore[no-any-return]


def _is_api() -> bool:
    return request.path.startswith(("/api/", "/hub/api/"))


def _same_origin() -> bool:
    # Browsers send Origin on cross-site POSTs; a request from another site is refused even with a token.
    # Under our Referrer-Policy: no-referrer a browser sends "null" for our own forms: the token decides then.
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return True
    return urllib.parse.urlsplit(origin).netloc == request.host


def gate(*roles: str, login: str = "admin.login") -> Callable[[], Any]:
    """Make a before_request hook: set up first, then logged in with one of roles, then a CSRF token on changes."""

    def check() -> Any:
        box = current_box()
        if not box.setup.done:
            if _is_api():
                return jsonify(error="the box is not set up yet; open /setup", code="setup_needed"), 403
            return redirect(url_for("setup.setup"))
        session = current_session()
        if session is None:
            where = url_for(login)
            if _is_api():
                return jsonify(error=f"log in first at {where}", code="login_needed"), 401
            return redirect(url_for(login, next=request.full_path.rstrip("?")))
        if session.account.role not in roles:
            abort(403, description=f"this page is for {' or '.join(roles)} accounts")
        if request.method in UNSAFE:
            given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
            if not _same_origin() or not hmac.compare_digest(given.encode(), session.csrf.encode()):
                abort(403, description="missing or wrong CSRF token; reload the page and try again")
        return None

    return check


def form_token() -> str:
    """Return the double-submit token for a form shown before login, made once per browser."""
    if "form_token" not in g:
        g.form_token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)
    return g.form_token  # type: ignore[no-any-return]


def check_form_token() -> None:
    """Refuse a pre-login form post whose token does not match its cookie, or that comes from another site."""
    cookie = request.cookies.get(FORM_COOKIE, "")
    given = request.form.get(CSRF_FIELD, "")
    if not cookie or not _same_origin() or not hmac.compare_digest(given.encode(), cookie.encode()):
        abort(403, description="missing or wrong form token; reload the page and try again")


def with_form_cookie(response: Response) -> Response:
    """Set the double-submit cookie the page's form repeats."""
    if "form_token" in g:
        response.set_cookie(FORM_COOKIE, g.form_token, httponly=True, samesite="Strict", path="/")
    return response


def log_in(response: Response, session: Session) -> Response:
    """Hand the browser its new session id (a fresh one at every login)."""
    # No max-age: the box ends a session after CLASSBOX_SESSION_IDLE without use, the browser when it closes.
    response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="Lax", path="/")
    response.delete_cookie(FORM_COOKIE, path="/")
    return response


def log_out(response: Response) -> Response:
    """End this browser's session."""
    current_box().sessions.end(request.cookies.get(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def private(response: Response) -> Response:
    """Mark a page of the admin or the hub: never cached, never shown inside another page's frame."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def tell(kind: str, text: str) -> None:
    """Leave a notice ("ok" or "error") that this session's next page shows once: what an action did."""
    session = current_session()
    assert session is not None
    session.notice = (kind, text)


def told() -> tuple[str, str] | None:
    """Return this session's notice and clear it."""
    session = current_session()
    assert session is not None
    notice, session.notice = session.notice, None
    return notice


def back(endpoint: str, kind: str, text: str, **values: Any) -> Response:
    """Leave a notice and go to a page (empty values are left out of its address)."""
    tell(kind, text)
    return redirect(url_for(endpoint, **{k: v for k, v in values.items() if v}))  # type: ignore[return-value]


def failed(exc: ClassboxError, endpoint: str, **values: Any) -> Response:
    """Go to a page saying that an action was not done, and why."""
    return back(endpoint, "error", f"没有完成：{exc}", **values)


def safe_next(target: str | None, default: str) -> str:
    """Return a local path to go to after login; anything pointing off the box becomes the default."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
