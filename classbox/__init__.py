"""classbox: an offline-first classroom box for rural teaching points."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from .config import Config

__version__ = "0.1.0"


def create_app(config: Config | None = None) -> Flask:
    """Build the web app on a box opened from config (defaults and CLASSBOX_* environment)."""
    from .web import build_app

    return build_app(config)
