"""The diagnostics bundle a technician downloads and sends on: what the box is, how it is, what it logged.

Secrets never go in: no password hash, no session, no control token, no pairing secret, no
credentials inside URLs. The bundle is made from the settings and reports, never from
state.json itself.
"""

from __future__ import annotations

import io
import json
import platform
import tarfile
import time
import urllib.parse
from dataclasses import fields
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import __version__
from .box import Box
from .sync.worker import history

PACKAGES = ("flask", "waitress", "tinydb", "zeroconf", "psutil", "cryptography", "segno", "click")
MAX_LOG_LINES = 1000


def without_credentials(url: str) -> str:
    """Return a URL with any user name and password taken out."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{netloc}"))


def settings_without_secrets(box: Box) -> dict[str, Any]:
    """Return the box's configuration and school settings, with credentials removed."""
    config: dict[str, Any] = {}
    for f in fields(box.config):
        value = getattr(box.config, f.name)
        config[f.metadata["env"]] = str(value)
    config["CLASSBOX_SYNC_SOURCES"] = ",".join(without_credentials(s) for s in box.config.sources)
    school = box.setup.settings().as_dict()
    school["hub_url"] = without_credentials(school["hub_url"]) if school["hub_url"] else ""
    return {"config": config, "school": school, "box_id": box.box_id, "set_up": box.setup.done,
            "accounts": [{"name": a.name, "role": a.role} for a in box.accounts.list()]}


def versions() -> dict[str, str]:
    """Return the versions of classbox, Python, the OS and the libraries it runs on."""
    found = {"classbox": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def bundle(box: Box, status: dict[str, Any], log_lines: list[str]) -> bytes:
    """Return a .tar.gz of settings (no secrets), versions, health, status, the last log lines and sync history."""
    made = time.time()
    files = {
        "README.txt": (f"classbox diagnostics of box {box.box_id}, made {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
                       "settings.json: configuration and school settings, secrets removed\n"
                       "versions.json, health.json, status.json: the box now\n"
                       f"log.txt: the last {MAX_LOG_LINES} log lines since the box started\n"
                       "sync-history.json: the last sync runs\n"),
        "settings.json": _json(settings_without_secrets(box)),
        "versions.json": _json(versions()),
        "health.json": _json(status.get("health", {})),
        "status.json": _json({k: v for k, v in status.items() if k != "health"}),
        "log.txt": "\n".join(log_lines[-MAX_LOG_LINES:]) + ("\n" if log_lines else ""),
        "sync-history.json": _json(history(box)),
    }
    out = io.BytesIO()
    folder = f"classbox-{box.short_id}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(made))}"
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mtime, info.mode = len(data), int(made), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n"
