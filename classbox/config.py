"""Settings: defaults, overridden by CLASSBOX_* environment variables, fixed after start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
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
    threads: int = field(default=8, metadata={"env": "CLASSBOX_THREADS"})
    demo: bool = field(default=True, metadata={"env": "CLASSBOX_DEMO"})
    max_manifest_bytes: int = field(default=16 * 1024 * 1024, metadata={"env": "CLASSBOX_MAX_MANIFEST_BYTES"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build the config from defaults, then the environment, then explicit overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name in environ and environ[name] != "":
                values[f.name] = _parse(f.name, name, environ[name], f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
        config = cls(**values)
        config.check()
        return config

    def with_(self, **changes: Any) -> Config:
        """Return a copy with some fields changed."""
        return replace(self, **changes)

    def check(self) -> None:
        """Raise ConfigError on values out of range."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"CLASSBOX_PORT must be 0-65535, got {self.port}")
        if not 1 <= self.threads <= 256:
            raise ConfigError(f"CLASSBOX_THREADS must be 1-256, got {self.threads}")
        if self.max_manifest_bytes < 1024:
            raise ConfigError("CLASSBOX_MAX_MANIFEST_BYTES must be at least 1024")


def _parse(field_name: str, env_name: str, raw: str, kind: Any) -> Any:
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
