"""The classroom TV: a 10-foot page driven by a TV remote's D-pad."""

from __future__ import annotations

import io
import ipaddress
import urllib.parse

import segno
from flask import Blueprint, Response, redirect, render_template, request, url_for

from .. import netinfo
from ..errors import InvalidInput

bp = Blueprint("tv", __name__)

# The pages whose address the box shows as a QR code, by the name /address.svg?for=… takes: a fixed set, so the
# route never becomes a QR code generator for whatever text a client sends.
ADDRESS_PAGES = {"tv": "tv.tv", "remote": "remote.remote"}
ADDRESS_QR_MAX_AGE = 60  # seconds: the LAN address can change (DHCP), so a browser asks again soon


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


def page_address(page: str) -> str:
    """Return the address of one of the box's pages for people ("tv" or "remote"), as seen from the LAN."""
    endpoint = ADDRESS_PAGES.get(page)
    if endpoint is None:
        raise InvalidInput(f"for: the page the QR code opens, tv or remote (not {page!r})")
    return box_address() + url_for(endpoint)


def address_qr_svg(address: str) -> bytes:
    """Return a QR code (SVG) of an address, with a quiet zone so it scans on a dark page too."""
    out = io.BytesIO()
    segno.make_qr(address, error="m").save(out, kind="svg", scale=8, border=4, dark="#000", light="#fff")
    return out.getvalue()


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    """Send people to the TV page."""
    return redirect(url_for("tv.tv"))


@bp.get("/tv")
def tv():  # type: ignore[no-untyped-def]
    """Serve the TV page; it reads the catalogue from /api/v1."""
    return render_template("tv.html", box_url=page_address("tv"))


@bp.get("/address.svg")
def address_qr():  # type: ignore[no-untyped-def]
    """Return a QR code (SVG) of the box's address, the one shown as text: ?for=tv or ?for=remote."""
    response = Response(address_qr_svg(page_address(request.args.get("for", ""))), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = f"max-age={ADDRESS_QR_MAX_AGE}"
    return response
