"""Publisher keys: ed25519 key pairs in PEM files, and the short id a manifest names its key by."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import storage
from .errors import KeyFileError

PRIVATE_NAME = "publisher.key"
PUBLIC_NAME = "publisher.pub"


def generate(out_dir: Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new key pair as out_dir/publisher.key (mode 0600) and out_dir/publisher.pub."""
    out_dir = Path(out_dir)
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    if not overwrite and (private_path.exists() or public_path.exists()):
        raise KeyFileError(f"{private_path} already exists; refusing to replace a publisher key (boxes trust it)")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    storage.atomic_write(private_path, private_pem, mode=0o600)
    storage.atomic_write(public_path, public_pem(key.public_key()), mode=0o644)
    return private_path, public_path


def public_pem(key: Ed25519PublicKey) -> bytes:
    """Return a public key as PEM bytes."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private(path: Path) -> Ed25519PrivateKey:
    """Read a private key written by generate()."""
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """Read a public key written by generate()."""
    return parse_public(_read(path, "public key"), str(path))


def parse_public(data: bytes, where: str = "public key") -> Ed25519PublicKey:
    """Parse a PEM public key."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{where} is not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{where} is not an ed25519 public key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    """Return the short id a manifest names its publisher key by."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """Return a detached signature file's content (base64 text) for data."""
    return base64.b64encode(key.sign(data)) + b"\n"


def signature_valid(key: Ed25519PublicKey, data: bytes, signature_file: bytes) -> bool:
    """Tell whether a detached signature file matches data under key."""
    try:
        signature = base64.b64decode(signature_file.strip(), validate=True)
        key.verify(signature, data)
    except (ValueError, InvalidSignature):
        return False
    return True


def _read(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if len(data) > 4096:
        raise KeyFileError(f"{path} is too large to be a {what}")
    return data
