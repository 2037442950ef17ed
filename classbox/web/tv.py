"""The classroom TV: a 10-foot page driven by a TV remote's D-pad."""

from __future__ import annotations

import ipaddress

from flask import Blueprint, redirect, render_template, request, url_for

from .. import netinfo

bp = Blueprint("tv", __name__)


def box_address() -> str:
    """Return the address people should type to reach this box, as seen from the LAN."""
    host, _, port = request.host.rpartition(":") if not request.host.endswith("]") else (request.host, "", "")
    if not port.isdigit():
        host, port = request.host, ""
    try:
        reached = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        reached = None
    if reached is not None and not reached.is_loopback:
        address = request.host  # the TV reached us by IP: that address works from the classroom
    else:
        lan = [a for a in netinfo.lan_addresses() if not a.startswith("127.")]
        address = (lan[0] if lan else host) + (f":{port}" if port else "")
    return f"http://{address}"


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    """Send people to the TV page."""
    return redirect(url_for("tv.tv"))


@bp.get("/tv")
def tv():  # type: ignore[no-untyped-def]
    """Serve the TV page; it reads the catalogue from /api/v1."""
    return render_template("tv.html", box_url=box_address() + url_for("tv.tv"))
