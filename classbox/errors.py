"""Every error classbox raises on purpose: one base, narrow subclasses."""

from __future__ import annotations


class ClassboxError(Exception):
    """Something went wrong that a person can act on; the message says what and what to do."""

    code = "error"


class ConfigError(ClassboxError):
    """A setting has a value classbox cannot use."""

    code = "bad_config"


class DataDirLocked(ClassboxError):
    """Another classbox process owns the data directory."""

    code = "data_dir_locked"


class StateError(ClassboxError):
    """The state database cannot be read."""

    code = "bad_state"


class KeyFileError(ClassboxError):
    """A key file is missing or is not an ed25519 key of ours."""

    code = "bad_key"


class BuildError(ClassboxError):
    """A channel source folder cannot be built; the message names the file and the field."""

    code = "bad_source"


class ChannelRejected(ClassboxError):
    """A channel failed verification; nothing on disk was changed."""

    code = "rejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotFound(ClassboxError):
    """The thing asked for does not exist."""

    code = "not_found"


class InvalidInput(ClassboxError):
    """A request or command carries a value that is not allowed; the message names the field."""

    code = "invalid_input"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Conflict(ClassboxError):
    """The request is valid but the box's current state does not allow it now."""

    code = "conflict"


class LoginRefused(ClassboxError):
    """A login failed, or the account must wait before trying again."""

    code = "login_refused"

    def __init__(self, message: str, wait: float = 0.0) -> None:
        super().__init__(message)
        self.wait = wait


class ProvisionError(ClassboxError):
    """The provisioning file cannot be used; nothing in it was applied."""

    code = "bad_provisioning"


class SignatureRejected(ClassboxError):
    """A signed request is unsigned, signed by a key not known here, or its signature does not match."""

    code = "bad_signature"
