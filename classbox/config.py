"""Settings: defaults, overridden by CLASSBOX_* environment variables, fixed after start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DATA = PACKAGE_DIR.parent / "content_cache"
DEVICE_DATA = Path("/var/lib/classbox")


def default_data_dir() -> Path:
    """Return content_cache/ when running from a checkout, else the device path."""
    if (PACKAGE_DIR.parent / "pyproject.toml").is_file() and CHECKOUT_DATA.is_dir():
        return CHECKOUT_DATA
    return DEVICE_DATA


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no or on/off, got {value!r}")


@dataclass(frozen=True)
class Config:
    """Every setting of a box; each field documents its environment variable in `env`."""

    data_dir: Path = field(default_factory=default_data_dir, metadata={"env": "CLASSBOX_DATA"})
    host: str = field(default="0.0.0.0", metadata={"env": "CLASSBOX_HOST"})
    port: int = field(default=8080, metadata={"env": "CLASSBOX_PORT"})
    threads: int = field(default=32, metadata={"env": "CLASSBOX_THREADS"})
    connections: int = field(default=400, metadata={"env": "CLASSBOX_CONNECTIONS"})
    demo: bool = field(default=True, metadata={"env": "CLASSBOX_DEMO"})
    max_manifest_bytes: int = field(default=16 * 1024 * 1024, metadata={"env": "CLASSBOX_MAX_MANIFEST_BYTES"})
    sync_sources: str = field(default="", metadata={"env": "CLASSBOX_SYNC_SOURCES"})
    sync_interval: int = field(default=3600, metadata={"env": "CLASSBOX_SYNC_INTERVAL"})
    sync_windows: str = field(default="", metadata={"env": "CLASSBOX_SYNC_WINDOWS"})
    sync_max_rate: str = field(default="", metadata={"env": "CLASSBOX_SYNC_MAX_RATE"})
    usb_roots: str = field(default="/media", metadata={"env": "CLASSBOX_USB_ROOTS"})
    scrub_interval: int = field(default=7 * 86400, metadata={"env": "CLASSBOX_SCRUB_INTERVAL"})
    scrub_rate: str = field(default="4M", metadata={"env": "CLASSBOX_SCRUB_RATE"})
    free_margin: int = field(default=200 * 1024 * 1024, metadata={"env": "CLASSBOX_FREE_MARGIN"})
    quota: str = field(default="", metadata={"env": "CLASSBOX_QUOTA"})
    provision_file: Path = field(default=Path("/boot/firmware/classbox.toml"), metadata={"env": "CLASSBOX_PROVISION"})
    session_idle: int = field(default=1800, metadata={"env": "CLASSBOX_SESSION_IDLE"})
    zeroconf_interfaces: str = field(default="all", metadata={"env": "CLASSBOX_ZEROCONF_INTERFACES"})
    role: str = field(default="box", metadata={"env": "CLASSBOX_ROLE"})
    max_upload: str = field(default="2G", metadata={"env": "CLASSBOX_MAX_UPLOAD"})
    report_interval: int = field(default=900, metadata={"env": "CLASSBOX_REPORT_INTERVAL"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build the config from defaults, then the environment, then explicit overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name in environ and environ[name] != "":
                values[f.name] = _parse(name, environ[name], f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Raise ConfigError on values out of range."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"CLASSBOX_PORT must be 0-65535, got {self.port}")
        if not 10 <= self.connections <= 900:
            raise ConfigError(f"CLASSBOX_CONNECTIONS must be 10-900, got {self.connections}")
        if not 1 <= self.threads <= 256:
            raise ConfigError(f"CLASSBOX_THREADS must be 1-256, got {self.threads}")
        if self.max_manifest_bytes < 1024:
            raise ConfigError("CLASSBOX_MAX_MANIFEST_BYTES must be at least 1024")
        if self.free_margin < 0:
            raise ConfigError(f"CLASSBOX_FREE_MARGIN must be 0 or more bytes, got {self.free_margin}")
        if self.sync_interval < 10:
            raise ConfigError(f"CLASSBOX_SYNC_INTERVAL must be at least 10 seconds, got {self.sync_interval}")
        if self.role not in ("box", "hub"):
            raise ConfigError(f"CLASSBOX_ROLE must be box or hub, got {self.role!r}")
        if self.report_interval < 1:
            raise ConfigError(f"CLASSBOX_REPORT_INTERVAL must be at least 1 second, got {self.report_interval}")
        if self.session_idle < 60:
            raise ConfigError(f"CLASSBOX_SESSION_IDLE must be at least 60 seconds, got {self.session_idle}")
        try:
            parse_interfaces(self.zeroconf_interfaces)
        except ValueError as exc:
            raise ConfigError(f"CLASSBOX_ZEROCONF_INTERFACES: {exc}") from None
        if self.scrub_interval < 1:
            raise ConfigError(f"CLASSBOX_SCRUB_INTERVAL must be at least 1 second, got {self.scrub_interval}")
        for name, parse, value in (("CLASSBOX_SYNC_MAX_RATE", parse_rate, self.sync_max_rate),
                                   ("CLASSBOX_SCRUB_RATE", parse_rate, self.scrub_rate),
                                   ("CLASSBOX_QUOTA", parse_size, self.quota),
                                   ("CLASSBOX_MAX_UPLOAD", parse_size, self.max_upload),
                                   ("CLASSBOX_SYNC_WINDOWS", parse_windows, self.sync_windows)):
            try:
                parse(value)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None

    @property
    def max_rate(self) -> float | None:
        """Return the sync bandwidth cap in bytes/s, None for none."""
        return parse_rate(self.sync_max_rate)

    @property
    def quota_bytes(self) -> int | None:
        """Return the most bytes the blob store may hold, None for no quota."""
        size = parse_size(self.quota)
        return None if size is None else int(size)

    @property
    def is_hub(self) -> bool:
        """Tell whether this box also runs the central school's hub."""
        return self.role == "hub"

    @property
    def max_upload_bytes(self) -> int:
        """Return the largest file a teacher may upload to a hub."""
        return int(parse_size(self.max_upload) or 2 * 1024**3)

    @property
    def windows(self) -> list[tuple[int, int]]:
        """Return the allowed sync windows as (start, end) minutes after midnight."""
        return parse_windows(self.sync_windows)

    @property
    def interfaces(self) -> list[str] | None:
        """Return the addresses zeroconf uses: None for every interface, [] for none."""
        return parse_interfaces(self.zeroconf_interfaces)

    @property
    def sources(self) -> list[str]:
        """Return the configured sync sources."""
        return [s.strip() for s in self.sync_sources.split(",") if s.strip()]


def _parse(env_name: str, raw: str, kind: Any) -> Any:
    try:
        if kind in ("int", int):
            return int(raw)
        if kind in ("bool", bool):
            return _flag(raw)
        if kind in ("Path", Path):
            return Path(raw)
        return raw
    except ValueError as exc:
        raise ConfigError(f"{env_name}: {exc}") from None


def settings() -> list[tuple[str, str, Any]]:
    """List (environment variable, field, default) for every setting, for docs and tests."""
    return [
        (f.metadata["env"], f.name, f.default if f.default_factory is MISSING else f.default_factory())
        for f in fields(Config)
    ]


def _amount(text: str, per_second: bool) -> float | None:
    unit = r"(?:i?B)?(?:/s)?" if per_second else r"(?:i?B)?"
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KkMmGgTt]?)" + unit + r"\s*", text or "0")
    if not m:
        example = "a rate such as 256K or 2M (bytes per second)" if per_second else "a size such as 500M or 20G"
        raise ValueError(f"{text!r} is not {example}")
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2).lower()]
    return float(m.group(1)) * scale or None


def parse_rate(text: str) -> float | None:
    """Parse a rate like 256K, 1.5M or 800000 (bytes per second); '' or 0 means no cap."""
    return _amount(text, per_second=True)


def parse_size(text: str) -> float | None:
    """Parse a size like 500M, 20G or 1000000 (bytes); '' or 0 means no limit."""
    return _amount(text, per_second=False)


def parse_windows(text: str) -> list[tuple[int, int]]:
    """Parse '22:00-06:00,12:00-13:30' into (start, end) minutes after midnight; '' means any time."""
    windows = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        m = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", part)
        if not m or int(m.group(1)) > 23 or int(m.group(3)) > 24 or int(m.group(2)) > 59 or int(m.group(4)) > 59:
            raise ValueError(f"{part!r} is not a window such as 22:00-06:00")
        windows.append((int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4))))
    return windows


def in_window(windows: list[tuple[int, int]], minute_of_day: int) -> bool:
    """Tell whether a time of day lies in any window (a window may run past midnight)."""
    if not windows:
        return True
    for start, end in windows:
        if start <= end and start <= minute_of_day < end:
            return True
        if start > end and (minute_of_day >= start or minute_of_day < end):
            return True
    return False


def parse_interfaces(text: str) -> list[str] | None:
    """Parse 'all', 'off' or a comma-separated list of IP addresses (zeroconf's interfaces)."""
    import ipaddress

    lowered = (text or "all").strip().lower()
    if lowered == "all":
        return None
    if lowered in {"off", "none"}:
        return []
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"{address!r} is not an IP address "
                             "(give 'all', 'off' or addresses such as 192.168.1.20)") from None
    return addresses
