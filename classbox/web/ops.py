"""Operational endpoints under /-/ for technicians and monitoring."""

from __future__ import annotations

import platform
from importlib.metadata import version

from flask import Blueprint, jsonify

from .. import __version__, health
from . import current_box

bp = Blueprint("ops", __name__, url_prefix="/-")


@bp.get("/health")
def health_view():  # type: ignore[no-untyped-def]
    """Report version, uptime, free disk, channels and lessons."""
    return jsonify(health.snapshot(current_box()).as_dict())


@bp.get("/version")
def version_view():  # type: ignore[no-untyped-def]
    """Report the versions of classbox and what it runs on."""
    return jsonify(
        classbox=__version__,
        python=platform.python_version(),
        flask=version("flask"),
        waitress=version("waitress"),
    )

