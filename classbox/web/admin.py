"""/admin: the technician's and head teacher's pages — login, dashboard, rooms and timetables, actions.

Every page and every /api/v1/admin route sits behind the setup gate, a login with the admin
role, and (for changes) a CSRF token: see web/auth.py.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from .. import __version__, actions, diagnostics, health, usb
from ..actions import ACTIONS
from ..errors import ClassboxError, InvalidInput, LoginRefused
from . import current_box, current_sync
from .auth import (
    SESSION_COOKIE,
    back,
    check_form_token,
    current_session,
    failed,
    form_token,
    gate,
    log_in,
    log_out,
    private,
    safe_next,
    told,
    with_form_cookie,
)

bp = Blueprint("admin", __name__, url_prefix="/admin")
api = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")

OPEN = {"admin.login", "admin.login_post", "admin.static"}
NOTICES = {
    "sync": "已开始同步。", "scrub": "已开始检查所有文件，结果见下方。", "import": "已开始从U盘导入。",
    "export": "已开始导出到U盘，进度见下方。", "rooms": "教室已保存。", "timetable": "课表已保存。",
    "booking": "课程安排已保存。", "password": "密码已修改。",
}
WEEKDAYS = ("一", "二", "三", "四", "五", "六", "日")


@bp.before_request
def _admin_only() -> Any:
    if request.endpoint in OPEN:
        return None
    return gate("admin")()


api.before_request(gate("admin"))


bp.after_request(private)


@bp.app_template_filter("size")
def _size(n: float | None) -> str:
    n = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@bp.app_template_filter("duration")
def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        return f"{days} 天 {hours} 小时"
    if hours:
        return f"{hours} 小时 {minutes} 分"
    return f"{minutes} 分 {s % 60} 秒" if minutes else f"{s} 秒"


@bp.app_template_filter("when")
def _when(ts: float | None) -> str:
    return "从未" if not ts else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@bp.app_template_filter("ago")
def _ago(seconds: float) -> str:
    return "刚刚" if seconds < 10 else f"{_duration(seconds)}前"


# ------------------------------------------------------------------ login


def login_page(action: str, heading: str, error: str | None = None, status: int = 200) -> Response:
    """Render a login form posting to action (the admin's, or the hub's teachers')."""
    default = "admin" if action.startswith("/admin") else ""
    response = make_response(render_template("login.html", error=error, csrf=form_token(), action=action,
                                              heading=heading, next=request.values.get("next", ""),
                                              name=request.form.get("name", default)), status)
    return with_form_cookie(response)


def log_in_from_form(action: str, heading: str, default_next: str) -> Response:
    """Check a login form; on success start a new session, with a new id, and go on."""
    box = current_box()
    check_form_token()
    try:
        account = box.accounts.login(request.form.get("name", ""), request.form.get("password", ""))
    except LoginRefused as exc:
        if exc.wait > 0 and "too many" in str(exc):
            return login_page(action, heading, f"登录失败次数太多，请在 {int(exc.wait) + 1} 秒后再试。", 429)
        return login_page(action, heading, "账号或密码不对。", 401)
    session = box.sessions.start(account, replacing=request.cookies.get(SESSION_COOKIE))
    return log_in(redirect(safe_next(request.form.get("next"), default_next)), session)  # type: ignore[arg-type]


@bp.get("/login")
def login():  # type: ignore[no-untyped-def]
    """Show the login form (or setup, if the box has no admin yet)."""
    if not current_box().setup.done:
        return redirect(url_for("setup.setup"))
    if current_session() is not None:
        return redirect(safe_next(request.args.get("next"), url_for("admin.dashboard")))
    return login_page(url_for("admin.login_post"), "管理员登录")


@bp.post("/login")
def login_post():  # type: ignore[no-untyped-def]
    """Check the password; on success start a new session, with a new id."""
    if not current_box().setup.done:
        return redirect(url_for("setup.setup"))
    return log_in_from_form(url_for("admin.login_post"), "管理员登录", url_for("admin.dashboard"))


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    """End this browser's session."""
    return log_out(redirect(url_for("admin.login")))


@bp.route("/password", methods=["GET", "POST"])
def password():  # type: ignore[no-untyped-def]
    """Change the admin password (the old one is asked again); every other session is logged out."""
    box, session = current_box(), current_session()
    assert session is not None
    error = None
    if request.method == "POST":
        new, again = request.form.get("new", ""), request.form.get("again", "")
        try:
            box.accounts.login(session.account.name, request.form.get("old", ""))
            if new != again:
                raise InvalidInput("the two new passwords differ")
            box.accounts.set_password(session.account.name, new)
        except (LoginRefused, InvalidInput) as exc:
            error = "原密码不对。" if isinstance(exc, LoginRefused) else f"无法修改：{exc}"
        else:
            box.sessions.end_all(session.account.name)
            fresh = box.sessions.start(session.account)
            fresh.notice = ("ok", NOTICES["password"])  # the new session's, not this one's
            return log_in(redirect(url_for("admin.dashboard")), fresh)
    return render_template("admin_password.html", error=error, csrf=session.csrf), 400 if error else 200


# ------------------------------------------------------------------ dashboard


def status() -> dict[str, Any]:
    """Gather what the dashboard shows, as plain values."""
    box = current_box()
    settings = box.setup.settings()
    ring = current_app.extensions.get("classbox_logring")
    discovery = current_app.extensions.get("classbox_discovery")
    now = time.time()
    return {
        "box": {"id": box.box_id, "name": settings.box_name, "school": settings.school, "version": __version__,
                "timezone": settings.timezone, "hub_url": settings.hub_url, "now": now},
        "health": health.snapshot(box).as_dict(),
        "storage": box.storage(),
        "sync": current_sync().status(),
        "rooms": [{**r, "screens": [{"id": s.id, "kind": s.kind, "address": s.address, "seen": s.seen,
                                     "ago": round(now - s.seen)}
                                    for s in box.classroom.screens() if s.room == r["name"]]}
                  for r in box.classroom.rooms()],
        "problems": [p.as_dict() for p in ring.problems(20)] if ring is not None else [],
        "peers": [p.as_dict() for p in discovery.peers()] if discovery is not None else [],
        "jobs": [j.as_dict() for j in box.jobs.latest()],
        "drives": [str(p) for p in usb.writable_drives(_usb_roots())],
    }


def _usb_roots() -> list[Path]:
    return [Path(r) for r in current_box().config.usb_roots.split(",") if r.strip()]


@bp.get("")
def dashboard():  # type: ignore[no-untyped-def]
    """Show health, storage, sync, screens, recent problems and the actions."""
    session = current_session()
    assert session is not None
    return render_template("admin.html", s=status(), csrf=session.csrf, notice=told())


@bp.get("/panels")
def panels():  # type: ignore[no-untyped-def]
    """Return the dashboard's changing panels alone, for the page to refresh itself."""
    session = current_session()
    assert session is not None
    return render_template("admin_panels.html", s=status(), csrf=session.csrf)


def _back(done: str, page: str = "admin.dashboard", **args: str) -> Response:
    return back(page, "ok", NOTICES[done], **args)


def _failed(exc: ClassboxError, page: str = "admin.dashboard") -> Response:
    return failed(exc, page)


@bp.post("/sync")
def sync_now():  # type: ignore[no-untyped-def]
    """Start a sync now, outside the windows, from the configured sources or from a box found on the LAN."""
    worker = current_sync()
    if not worker.running:
        return _failed(ClassboxError("the sync worker is not running"))
    peer = request.form.get("peer")
    if peer:
        # Only a box found on the LAN: the form cannot point the box at any address it likes.
        discovery = current_app.extensions.get("classbox_discovery")
        found = {p.mirror_url for p in discovery.peers()} if discovery is not None else set()
        if peer not in found:
            return _failed(InvalidInput(f"{peer} is not a box found on the LAN now; reload the page"))
        worker.request_now(sources=[peer])
    else:
        worker.request_now()
    return _back("sync")


@bp.post("/scrub")
def scrub():  # type: ignore[no-untyped-def]
    """Re-hash every stored file in the background."""
    box = current_box()

    def work(progress: Any) -> str:
        damaged = box.scrub(on_progress=progress)
        return f"{len(damaged)} damaged file(s) moved to quarantine" if damaged else "every file is intact"

    try:
        box.jobs.start("scrub", "检查文件 (scrub)", work)
    except ClassboxError as exc:
        return _failed(exc)
    return _back("scrub")


def _drive(field: str) -> Path:
    """Return the drive a form names, only if it is one the box found under its USB roots."""
    chosen = request.form.get(field, "")
    offered = {str(p): p for p in usb.writable_drives(_usb_roots())}
    offered |= {str(d.path): d.path for d in current_sync().drives()}
    if chosen not in offered:
        raise InvalidInput(f"no drive {chosen!r} under {current_box().config.usb_roots}; plug it in and reload")
    return offered[chosen]


@bp.post("/usb/import")
def usb_import():  # type: ignore[no-untyped-def]
    """Import the channels on a drive, with the same checks as a sync."""
    try:
        drive = _drive("drive")
    except ClassboxError as exc:
        return _failed(exc)
    worker = current_sync()
    if not worker.running:
        return _failed(ClassboxError("the sync worker is not running"))
    worker.request_now(sources=[str(drive)])
    return _back("import")


@bp.post("/usb/export")
def usb_export():  # type: ignore[no-untyped-def]
    """Write the box's channels to a drive in the background; run again to resume."""
    box = current_box()
    try:
        drive = _drive("drive")

        def work(progress: Any) -> str:
            result = usb.export(box.store, drive, None, progress)
            return (f"{', '.join(result.channels)} → {drive}: {result.files_written} files written "
                    f"({result.bytes_written / 1e6:.1f} MB), {result.files_present} already there")

        box.jobs.start("export", f"导出到 {drive}", work)
    except ClassboxError as exc:
        return _failed(exc)
    return _back("export")


@bp.get("/diagnostics.tar.gz")
def diagnostics_bundle():  # type: ignore[no-untyped-def]
    """Download configuration (secrets removed), versions, health, recent log lines and sync history."""
    box = current_box()
    ring = current_app.extensions.get("classbox_logring")
    data = diagnostics.bundle(box, status(), ring.lines() if ring is not None else [])
    name = f"classbox-{box.short_id}-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz"
    return Response(data, mimetype="application/gzip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@api.get("/status")
def status_json():  # type: ignore[no-untyped-def]
    """Return what the dashboard shows, as JSON."""
    return jsonify(status())


@api.post("/<action>")
def run_action(action: str):  # type: ignore[no-untyped-def]
    """Run one of the box's actions (rooms, timetable, bookings, pins, subscriptions, ...) as the admin."""
    return jsonify(actions.run(current_box(), action, request.get_json(silent=True)))


# ------------------------------------------------------------------ rooms and timetables


def _week_of(text: str | None) -> date:
    try:
        day = date.fromisoformat(text) if text else date.today()
    except ValueError:
        day = date.today()
    return day - timedelta(days=day.weekday())


@bp.get("/rooms")
def rooms():  # type: ignore[no-untyped-def]
    """Show the rooms, each one's weekly timetable and the lessons booked this week."""
    box, session = current_box(), current_session()
    assert session is not None
    monday = _week_of(request.args.get("week"))
    days = [monday + timedelta(days=i) for i in range(7)]
    lessons = sorted(((e.lesson.id, e.lesson.title) for e in box.catalog.browse({}).entries), key=lambda x: x[1])
    listed = []
    for r in box.classroom.rooms():
        periods = box.classroom.timetables.periods(r["name"])
        booked = {(b.date, b.period): b for b in box.classroom.bookings(r["name"], days[0].isoformat(),
                                                                          days[-1].isoformat())}
        listed.append({**r, "periods": periods, "booked": booked,
                       "rows": max(8, len(periods) + 3)})
    return render_template("admin_rooms.html", rooms=listed, days=days, weekdays=WEEKDAYS, lessons=lessons,
                           titles=dict(lessons), csrf=session.csrf, monday=monday,
                           prev_week=(monday - timedelta(days=7)).isoformat(),
                           next_week=(monday + timedelta(days=7)).isoformat(),
                           notice=told())


def _rooms_back(done: str, week: str = "") -> Response:
    return _back(done, "admin.rooms", week=week)


@bp.post("/rooms")
def rooms_post():  # type: ignore[no-untyped-def]
    """Add, rename the class of, or remove a room."""
    body = {"name": request.form.get("name", ""), "class": request.form.get("class", ""),
            "remove": request.form.get("remove") == "1"}
    try:
        if not body["name"].strip():
            raise InvalidInput("room name: required")
        ACTIONS["rooms"](current_box(), body)
    except ClassboxError as exc:
        return _failed(exc, "admin.rooms")
    return _rooms_back("rooms")


@bp.post("/rooms/timetable")
def timetable_post():  # type: ignore[no-untyped-def]
    """Replace a room's weekly timetable with the rows of the form (empty rows are dropped)."""
    form = request.form
    periods = []
    for weekday, number, start, end, subject in zip(form.getlist("weekday"), form.getlist("number"),
                                                    form.getlist("start"), form.getlist("end"),
                                                    form.getlist("subject"), strict=True):
        if not (start or end or subject):
            continue
        try:
            # Weekday 0 is "Monday to Friday": most schools keep the same bell times all week.
            days = range(1, 6) if int(weekday) == 0 else [int(weekday)]
            periods += [{"weekday": day, "number": int(number), "start": start, "end": end, "subject": subject}
                        for day in days]
        except ValueError:
            return _failed(InvalidInput(f"weekday and period must be numbers (got {weekday!r}, {number!r})"),
                           "admin.rooms")
    try:
        ACTIONS["timetable"](current_box(), {"room": form.get("room", ""), "periods": periods})
    except ClassboxError as exc:
        return _failed(exc, "admin.rooms")
    return _rooms_back("timetable")


@bp.post("/rooms/booking")
def booking_post():  # type: ignore[no-untyped-def]
    """Put a lesson into a date and period of a room, or clear it."""
    form = request.form
    try:
        period = int(form.get("period", ""))
    except ValueError:
        return _failed(InvalidInput("period: the period's number"), "admin.rooms")
    body = {"room": form.get("room", ""), "date": form.get("date", ""), "period": period,
            "lesson": form.get("lesson", ""), "note": form.get("note", "")}
    try:
        ACTIONS["bookings"](current_box(), body)
    except ClassboxError as exc:
        return _failed(exc, "admin.rooms")
    return _rooms_back("booking", form.get("week", ""))


