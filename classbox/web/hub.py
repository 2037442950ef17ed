"""/hub: the central school's pages — teachers, teaching points, lessons, plans, publishing, reports.

Only on a box running as a hub (`classbox serve --hub`). Teachers log in at /hub/login with the
same hardened login as the admin; the admin account may use every hub page too.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any, BinaryIO

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from ..errors import ClassboxError, InvalidInput, NotFound
from ..hub import publish
from ..hub.lessons import Lessons
from ..hub.plans import Plans, monday_of
from ..hub.points import Points, TeachingPoint
from ..hublink import notify
from . import current_box
from .admin import log_in_from_form, login_page
from .auth import back, current_session, failed, gate, log_out, private, safe_next, told
from .media import send_blob
from .reports import reports_of

bp = Blueprint("hub", __name__, url_prefix="/hub")

OPEN = {"hub.login", "hub.login_post"}
ADMIN_ONLY = {"hub.teachers", "hub.teachers_post"}
WEEKDAYS = ("一", "二", "三", "四", "五", "六", "日")
PERIODS = 8
NOTICES = {"teacher": "教师账号已建立。", "point": "教学点已登记。", "lesson": "课程已保存。",
           "plan": "教学进度已保存。", "copied": "已复制到下一周。", "published": "已发布。"}


@bp.before_request
def _hub_only() -> Any:
    if not current_box().config.is_hub:
        abort(404, description="this box is not a hub; start it with `classbox serve --hub`")
    if request.endpoint in OPEN:
        return None
    if request.endpoint in ADMIN_ONLY:
        return gate("admin", login="hub.login")()
    return gate("teacher", "admin", login="hub.login")()


@bp.after_request
def _no_store(response: Response) -> Response:
    return response if request.path.startswith("/hub/files/") else private(response)


def _lessons() -> Lessons:
    return Lessons(current_box().state)


def _plans() -> Plans:
    return Plans(current_box().state)


def _points() -> Points:
    return Points(current_box().state)


def _back(done: str, endpoint: str, **values: Any) -> Response:
    return back(endpoint, "ok", NOTICES[done], **values)


def _render(template: str, **values: Any) -> str:
    session = current_session()
    assert session is not None
    return render_template(template, csrf=session.csrf, notice=told(), me=session.account, **values)


def _latest(point: TeachingPoint) -> dict[str, Any]:
    return reports_of(current_app).latest(point.box_id) or {}


# ------------------------------------------------------------------ login


@bp.get("/login")
def login():  # type: ignore[no-untyped-def]
    """Show the teachers' login form."""
    if current_session() is not None:
        return redirect(safe_next(request.args.get("next"), url_for("hub.home")))
    return login_page(url_for("hub.login_post"), "中心校教师登录")


@bp.post("/login")
def login_post():  # type: ignore[no-untyped-def]
    """Check a teacher's password; on success start a new session, with a new id."""
    return log_in_from_form(url_for("hub.login_post"), "中心校教师登录", url_for("hub.home"))


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    """End this browser's session."""
    return log_out(redirect(url_for("hub.login")))


@bp.get("/teachers")
def teachers():  # type: ignore[no-untyped-def]
    """List the accounts; the admin adds teachers here."""
    return _render("hub_teachers.html", accounts=current_box().accounts.list())


@bp.post("/teachers")
def teachers_post():  # type: ignore[no-untyped-def]
    """Create a teacher account."""
    try:
        current_box().accounts.create(request.form.get("name", ""), "teacher", password=request.form.get("password"))
    except ClassboxError as exc:
        return failed(exc, "hub.teachers")
    return _back("teacher", "hub.teachers")


# ------------------------------------------------------------------ teaching points


def point_status(point: TeachingPoint, today: date) -> dict[str, Any]:
    """Return what the teacher sees of a point: versions, last report, lessons ready or missing."""
    latest = _latest(point)
    snapshot = latest.get("snapshot", {}) if isinstance(latest, dict) else {}
    manifest = publish.published(current_box(), point)
    channel = snapshot.get("channel", {}) if isinstance(snapshot, dict) else {}
    upcoming = snapshot.get("upcoming", []) if isinstance(snapshot, dict) else []
    return {
        "published": manifest.version if manifest else None,
        "held": channel.get("version") if isinstance(channel, dict) else None,
        "last_seen": latest.get("last_seen") if isinstance(latest, dict) else None,
        "disk_free": (snapshot.get("health") or {}).get("disk_free_bytes") if isinstance(snapshot, dict) else None,
        "sync": (snapshot.get("sync") or {}).get("state") if isinstance(snapshot, dict) else None,
        "ready": [u for u in upcoming if isinstance(u, dict) and u.get("ready")],
        "missing": [u for u in upcoming if isinstance(u, dict) and not u.get("ready")],
        "not_fitting": channel.get("not_fitting", []) if isinstance(channel, dict) else [],
    }


@bp.get("")
def home():  # type: ignore[no-untyped-def]
    """List the teaching points with what each box holds and reported."""
    today = date.today()
    points = [(p, point_status(p, today)) for p in _points().all()]
    return _render("hub_home.html", points=points)


@bp.post("/points")
def points_post():  # type: ignore[no-untyped-def]
    """Register a teaching point from the enrolment its box shows (pasted or as the downloaded file)."""
    upload = request.files.get("file")
    text = upload.read(64 * 1024) if upload and upload.filename else request.form.get("enrolment", "")
    try:
        point = _points().enrol(text, address=request.form.get("address") or None)
    except ClassboxError as exc:
        return failed(exc, "hub.home")
    return _back("point", "hub.point", box_id=point.box_id)


def _week(text: str | None) -> date:
    try:
        return monday_of(date.fromisoformat(text)) if text else monday_of(date.today())
    except ValueError:
        return monday_of(date.today())


@bp.get("/points/<box_id>")
def point(box_id: str):  # type: ignore[no-untyped-def]
    """Show a point's week: its plan per class, publishing, and what its box reported."""
    p = _points().require(box_id)
    monday = _week(request.args.get("week"))
    days = [monday + timedelta(days=i) for i in range(7)]
    entries = _plans().between(box_id, days[0], days[-1])
    grid: dict[tuple[str, int], list[Any]] = {}
    for e in entries:
        grid.setdefault((e.date, e.period), []).append(e)
    lessons = _lessons().all()
    titles = {lesson.id: lesson.title for lesson in lessons}
    played_day = request.args.get("day") or date.today().isoformat()
    try:
        played = reports_of(current_app).played(box_id, played_day)
    except ClassboxError:  # a day typed wrong in the address: nothing to show
        played = []
    plan = publish.prepare(current_box(), p, _lessons(), _plans(), date.today(), _latest(p).get("snapshot"))
    return _render("hub_point.html", point=p, status=point_status(p, date.today()), days=days, grid=grid,
                   weekdays=WEEKDAYS, periods=range(1, PERIODS + 1), lessons=lessons, titles=titles,
                   monday=monday, prev_week=(monday - timedelta(days=7)).isoformat(),
                   next_week=(monday + timedelta(days=7)).isoformat(), classes=_plans().classes(box_id),
                   warnings=plan.warnings, played=played, played_day=played_day)


@bp.post("/points/<box_id>/plan")
def plan_post(box_id: str):  # type: ignore[no-untyped-def]
    """Put a lesson into a class's date and period, or clear it."""
    _points().require(box_id)
    form = request.form
    week = form.get("week", "")
    try:
        lesson = form.get("lesson", "")
        if lesson:
            _lessons().get(lesson)
        period = int(form.get("period", "0")) if form.get("period", "").isdigit() else 0
        _plans().put(box_id, form.get("date", ""), period, form.get("class", ""), lesson or None,
                     form.get("note", ""))
    except ClassboxError as exc:
        return failed(exc, "hub.point", box_id=box_id, week=week or None)
    return _back("plan", "hub.point", box_id=box_id, week=week or None)


@bp.post("/points/<box_id>/copy")
def copy_week(box_id: str):  # type: ignore[no-untyped-def]
    """Copy a week's plan to the next week."""
    _points().require(box_id)
    monday = _week(request.form.get("week"))
    try:
        _plans().copy_week(box_id, monday, monday + timedelta(days=7))
    except ClassboxError as exc:
        return failed(exc, "hub.point", box_id=box_id, week=monday.isoformat())
    return _back("copied", "hub.point", box_id=box_id, week=(monday + timedelta(days=7)).isoformat())


@bp.post("/points/<box_id>/publish")
def publish_post(box_id: str):  # type: ignore[no-untyped-def]
    """Sign a new version of the point's channel into the mirror, then tell its box if it can be reached."""
    box = current_box()
    p = _points().require(box_id)
    plan = publish.prepare(box, p, _lessons(), _plans(), date.today(), _latest(p).get("snapshot"))
    if plan.warnings and request.form.get("confirm") != "1":
        return failed(InvalidInput("先看一下发布前的提醒，确认后再发布"), "hub.point", box_id=box_id)
    try:
        manifest = publish.publish(box, p, plan)
    except ClassboxError as exc:
        return failed(exc, "hub.point", box_id=box_id)
    notified = _notify(p)
    return back("hub.point", "ok", f"已发布第 {manifest.version} 版：{len(manifest.lessons)} 节课。" + notified,
                box_id=box_id)


def _notify(p: TeachingPoint) -> str:
    if not p.address:
        return "教学点没有登记地址：盒子下次同步时会取到。"
    problem = notify(p.address, current_box().signing_key, current_box().box_id)
    return "已通知教学点的盒子，它正在同步。" if problem is None else f"没能通知盒子（{problem}）：它下次同步时会取到。"


# ------------------------------------------------------------------ lessons


def _path_from(form: Any) -> dict[str, str]:
    return {level: form.get(level, "") for level in ("stage", "grade", "subject", "edition", "volume", "unit",
                                                       "lesson", "period")}


@bp.get("/lessons")
def lessons():  # type: ignore[no-untyped-def]
    """List the hub's lessons and the channels' lessons that can be picked."""
    own = _lessons().all()
    picked = {lesson.id for lesson in own}
    national = [e for e in current_box().catalog.browse({}).entries if e.lesson.id not in picked]
    return _render("hub_lessons.html", lessons=own, national=national[:200])


@bp.post("/lessons")
def lessons_post():  # type: ignore[no-untyped-def]
    """Start a new lesson, or pick one from a channel the hub holds."""
    session = current_session()
    assert session is not None
    box = current_box()
    try:
        if request.form.get("pick"):
            entry = box.catalog.lesson(request.form["pick"])
            if entry is None:
                raise NotFound(f"no lesson {request.form['pick']!r} on this hub")
            lesson = _lessons().pick(entry.lesson, entry.channel, session.account.name)
        else:
            lesson = _lessons().create(request.form.get("title", ""), _path_from(request.form),
                                       session.account.name)
    except ClassboxError as exc:
        return failed(exc, "hub.lessons")
    return _back("lesson", "hub.lesson", lesson_id=lesson.id)


@bp.get("/lessons/<lesson_id>")
def lesson(lesson_id: str):  # type: ignore[no-untyped-def]
    """Edit a lesson: its path, its files, the pause points on its video."""
    return _render("hub_lesson.html", lesson=_lessons().get(lesson_id))


@bp.post("/lessons/<lesson_id>")
def lesson_post(lesson_id: str):  # type: ignore[no-untyped-def]
    """Change a lesson's title and curriculum path."""
    try:
        _lessons().describe(lesson_id, request.form.get("title", ""), _path_from(request.form),
                            request.form.get("section", "课程教学"))
    except ClassboxError as exc:
        return failed(exc, "hub.lesson", lesson_id=lesson_id)
    return _back("lesson", "hub.lesson", lesson_id=lesson_id)


@bp.get("/files/<sha256>")
def file(sha256: str):  # type: ignore[no-untyped-def]
    """Serve one of the hub's files to the teacher's browser (a video to mark pause points on)."""
    box = current_box()
    media_type = request.args.get("type", "application/octet-stream")
    if media_type not in ("video/mp4", "video/webm", "application/pdf", "image/jpeg", "image/png"):
        media_type = "application/octet-stream"

    def opener(name: str) -> BinaryIO | None:
        path = publish.file_path(box, name)
        return open(path, "rb") if path is not None else None  # noqa: SIM115 (send_blob closes it)

    return send_blob(sha256, media_type, opener)


@bp.post("/api/lessons/<lesson_id>/files")
def add_file(lesson_id: str):  # type: ignore[no-untyped-def]
    """Attach a finished upload to a lesson: {"sha256", "size", "media_type", "name", "role"}."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    sha256 = str(body.get("sha256", ""))
    if publish.file_path(current_box(), sha256) is None:
        raise NotFound(f"no uploaded file {sha256[:16]}… on this hub; upload it first")
    size = body.get("size")
    if not isinstance(size, int):
        raise InvalidInput("size: bytes")
    lesson = _lessons().add_file(lesson_id, str(body.get("role", "")), str(body.get("name", "")), sha256, size,
                                 str(body.get("media_type", "")))
    return jsonify(lesson.as_dict())


@bp.post("/api/lessons/<lesson_id>/pause_points")
def add_pause_point(lesson_id: str):  # type: ignore[no-untyped-def]
    """Add a pause point to the lesson's video: {"at": seconds, "prompt": text}."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return jsonify(_lessons().add_pause_point(lesson_id, body.get("at"), body.get("prompt")).as_dict())


@bp.delete("/api/lessons/<lesson_id>/pause_points")
def remove_pause_point(lesson_id: str):  # type: ignore[no-untyped-def]
    """Remove the pause point at ?at=seconds."""
    try:
        at = float(request.args.get("at", ""))
    except ValueError:
        raise InvalidInput("at: seconds into the video") from None
    return jsonify(_lessons().remove_pause_point(lesson_id, at).as_dict())


@bp.app_template_filter("clock")
def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


@bp.app_template_filter("stamp")
def _stamp(ts: float | None) -> str:
    return "从未" if not ts else time.strftime("%m-%d %H:%M", time.localtime(ts))
