"""First boot: the school's settings and the admin password, from /setup or a provisioning file.

Setup is done once an admin account exists. Until then every admin page leads to /setup.
A provisioning file (TOML, on a device the FAT boot partition) pre-fills the settings so that
one image serves every school; it may carry the admin password's hash, never a password.
"""

from __future__ import annotations

import logging
import os
import re
import time
import tomllib
import urllib.parse
import zoneinfo
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .accounts import Accounts, check_hash
from .errors import InvalidInput, ProvisionError
from .storage import State

log = logging.getLogger(__name__)

ADMIN = "admin"
DEFAULT_TIMEZONE = "Asia/Shanghai"
PROVISION_MAX_BYTES = 64 * 1024
FINGERPRINT_RE = re.compile(r"(?:ed25519:)?([0-9a-f]{16})")


@dataclass(frozen=True)
class SchoolSettings:
    """What setup asks for besides the password."""

    school: str = ""
    box_name: str = ""
    timezone: str = DEFAULT_TIMEZONE
    hub_url: str = ""
    hub_key: str = ""

    def as_dict(self) -> dict[str, str]:
        """Return the settings as plain values."""
        return asdict(self)


FIELDS = tuple(f.name for f in fields(SchoolSettings))


def check_settings(values: dict[str, Any], where: str = "") -> SchoolSettings:
    """Return settings from raw values, or raise InvalidInput naming the first bad field."""
    at = f"{where}: " if where else ""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"{at}unknown setting {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    clean: dict[str, str] = {}
    for name in FIELDS:
        value = values.get(name, "")
        if not isinstance(value, str):
            raise InvalidInput(f"{at}{name} must be text", name)
        value = value.strip()
        if len(value) > 200 or any(ord(c) < 32 for c in value):
            raise InvalidInput(f"{at}{name} must be one line of at most 200 characters", name)
        clean[name] = value
    for name in ("school", "box_name"):
        if not clean[name]:
            raise InvalidInput(f"{at}{name} is required", name)
    clean["timezone"] = clean["timezone"] or DEFAULT_TIMEZONE
    try:
        zoneinfo.ZoneInfo(clean["timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{at}timezone {clean['timezone']!r} is not a time zone such as Asia/Shanghai",
                           "timezone") from None
    if clean["hub_url"]:
        parts = urllib.parse.urlsplit(clean["hub_url"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"{at}hub_url {clean['hub_url']!r} is not an http:// or https:// address", "hub_url")
        clean["hub_url"] = clean["hub_url"].rstrip("/")
    if clean["hub_key"]:
        m = FINGERPRINT_RE.fullmatch(clean["hub_key"].lower())
        if not m:
            raise InvalidInput(f"{at}hub_key {clean['hub_key']!r} is not a key fingerprint such as "
                               "ed25519:3f9a0c1d2e4b5a69", "hub_key")
        clean["hub_key"] = f"ed25519:{m.group(1)}"
    return SchoolSettings(**clean)


@dataclass(frozen=True)
class Provision:
    """What a provisioning file holds: settings and perhaps the admin password's hash."""

    settings: SchoolSettings
    password_hash: str | None


def read_provision(path: Path) -> Provision | None:
    """Read a provisioning file; None when there is none; ProvisionError naming what is wrong."""
    try:
        with open(path, "rb") as f:
            raw = f.read(PROVISION_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProvisionError(f"{path}: cannot read it: {exc.strerror}") from None
    if len(raw) > PROVISION_MAX_BYTES:
        raise ProvisionError(f"{path}: larger than {PROVISION_MAX_BYTES // 1024} KiB; is it the right file?")
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))  # Notepad's "UTF-8 with BOM" too
    except UnicodeDecodeError:
        raise ProvisionError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProvisionError(f"{path}: not valid TOML: {exc}") from None
    data.pop("version", None)
    if not data:
        return None  # the image's example, every line still commented out: nothing to apply
    if "admin_password" in data or "password" in data:
        raise ProvisionError(f"{path}: a provisioning file may not carry a password; put admin_password_hash "
                             "instead (make one with `classbox hash-password`)")
    password_hash = data.pop("admin_password_hash", None)
    try:
        if password_hash is not None:
            check_hash(password_hash)
        settings = check_settings(data)
    except InvalidInput as exc:
        raise ProvisionError(f"{path}: {exc}") from None
    return Provision(settings, password_hash)


def apply_timezone(name: str) -> None:
    """Make this process's local time the school's time zone (the box may not change the system's)."""
    os.environ["TZ"] = name
    time.tzset()


class Setup:
    """Whether the box is set up, its school settings, and the provisioning file's part in them."""

    def __init__(self, state: State, accounts: Accounts, provision_file: Path) -> None:
        self.state = state
        self.accounts = accounts
        self.provision_file = provision_file
        self.provision_error: str | None = None
        self.prefill = SchoolSettings()

    @property
    def done(self) -> bool:
        """Tell whether an admin password exists."""
        return self.accounts.any_admin()

    def settings(self) -> SchoolSettings:
        """Return the school settings saved at setup (or the pre-filled ones before)."""
        saved = self.state.get("setup")
        return SchoolSettings(**{k: v for k, v in saved.items() if k in FIELDS}) if saved else self.prefill

    def start(self) -> None:
        """At start: read the provisioning file if setup is not done, and apply the time zone."""
        if not self.done:
            try:
                provision = read_provision(self.provision_file)
            except ProvisionError as exc:
                self.provision_error = str(exc)
                log.error("provisioning file not applied: %s", exc)
                provision = None
            if provision is not None:
                self.prefill = provision.settings
                if provision.password_hash:
                    self.complete(provision.settings, password_hash=provision.password_hash)
                    log.info("set up from %s for %s", self.provision_file, provision.settings.school)
                else:
                    log.info("%s pre-fills setup; the admin password is set on /setup", self.provision_file)
        apply_timezone(self.settings().timezone)

    def complete(self, settings: SchoolSettings, password: str | None = None,
                 password_hash: str | None = None) -> None:
        """Save the settings and create the admin account; refused once setup is done."""
        if self.done:
            raise InvalidInput("setup is already done; change settings in the admin pages")
        self.accounts.create(ADMIN, "admin", password=password, password_hash=password_hash)
        self.state.set("setup", {**settings.as_dict(), "completed": time.time()})
        apply_timezone(settings.timezone)
