"""/setup: the first page a technician sees; reachable only until an admin password exists."""

from __future__ import annotations

import zoneinfo

from flask import Blueprint, Response, abort, make_response, redirect, render_template, request, url_for

from ..errors import InvalidInput
from ..setup import FIELDS, SchoolSettings, check_settings
from . import current_box
from .auth import check_form_token, form_token, log_in, with_form_cookie

bp = Blueprint("setup", __name__)

FIELD_ZH = {"school": "学校名称", "box_name": "盒子名称", "timezone": "时区", "hub_url": "中心校地址",
            "hub_key": "中心校密钥指纹", "password": "管理员密码"}
COMMON_ZONES = ("Asia/Shanghai", "Asia/Urumqi", "Asia/Hong_Kong", "Asia/Macau", "Asia/Taipei")


def _problem(exc: InvalidInput) -> str:
    label = FIELD_ZH.get(exc.field or "", "")
    return f"请检查「{label}」：{exc}" if label else f"无法完成设置：{exc}"


def _page(settings: SchoolSettings, error: str | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    box = current_box()
    zones = [*COMMON_ZONES, *sorted(zoneinfo.available_timezones() - set(COMMON_ZONES))]
    response = make_response(render_template(
        "setup.html", settings=settings, error=error, zones=zones, csrf=form_token(),
        provision_file=box.setup.provision_file, provision_error=box.setup.provision_error), status)
    return with_form_cookie(response)


@bp.before_request
def _only_until_done() -> None:
    if current_box().setup.done:
        abort(404, description="setup is done; log in at /admin/login")


@bp.after_request
def _no_frames(response: Response) -> Response:
    response.headers["X-Frame-Options"] = "DENY"  # the password form, like the admin's, is never framed
    return response


@bp.get("/setup")
def setup():  # type: ignore[no-untyped-def]
    """Show the setup form, pre-filled from the provisioning file if there is one."""
    return _page(current_box().setup.settings())


@bp.post("/setup")
def complete():  # type: ignore[no-untyped-def]
    """Save the school settings and the admin password, then log the admin in."""
    check_form_token()
    box = current_box()
    values = {name: request.form.get(name, "") for name in FIELDS}
    password, again = request.form.get("password", ""), request.form.get("password_again", "")
    try:
        settings = check_settings(values)
    except InvalidInput as exc:
        return _page(SchoolSettings(**{k: v.strip() for k, v in values.items()}), _problem(exc), 400)
    if password != again:
        return _page(settings, "两次输入的密码不一样 (the two passwords differ)", 400)
    try:
        box.setup.complete(settings, password=password)
    except InvalidInput as exc:
        return _page(settings, _problem(exc), 400)
    session = box.sessions.start(box.accounts.login("admin", password))
    return log_in(redirect(url_for("admin.dashboard")), session)
