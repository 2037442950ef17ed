"""The classroom TV: a 10-foot page driven by a TV remote's D-pad."""

from __future__ import annotations

import ipaddress
import urllib.parse

from flask import Blueprint, redirect, render_template, request, url_for

from .. import netinfo

bp = Blueprint("tv", __name__)


def box_address() -> str:
    """Return the address people should type to reach this box, as seen from the LAN."""
    reached = urllib.parse.urlsplit(f"//{request.host}")
    try:
        by_ip = not ipaddress.ip_address(reached.hostname or "").is_loopback
    except ValueError:  # a name such as localhost or classbox.local
        by_ip = False
    if by_ip:
        return f"http://{request.host}"  # the TV reached us by IP: that address works from the classroom
    lan = [a for a in netinfo.lan_addresses() if not a.startswith("127.")]
    port = f":{reached.port}" if reached.port else ""
    return f"http://{lan[0] if lan else reached.hostname}{port}"


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    """Send people to the TV page."""
    return redirect(url_for("tv.tv"))


@bp.get("/tv")
def tv():  # type: ignore[no-untyped-def]
    """Serve the TV page; it reads the catalogue from /api/v1."""
    return render_template("tv.html", box_url=box_address() + url_for("tv.tv"))
