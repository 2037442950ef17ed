"""The classroom TV: a 10-foot page driven by a TV remote's D-pad."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from .. import netinfo

bp = Blueprint("tv", __name__)


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    """Send people to the TV page."""
    return redirect(url_for("tv.tv"))


@bp.get("/tv")
def tv():  # type: ignore[no-untyped-def]
    """Serve the TV page; it reads the catalogue from /api/v1."""
    host = request.host.rsplit(":", 1)
    port = host[1] if len(host) == 2 and host[1].isdigit() else ""
    addrs = [a for a in netinfo.lan_addresses() if not a.startswith("127.")] or [request.host.split(":")[0]]
    box_url = f"http://{addrs[0]}{':' + port if port else ''}/tv"
    return render_template("tv.html", box_url=box_url)
