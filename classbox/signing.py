"""Signed requests between boxes and a hub: reports up, notifications down.

The sender signs the method, the path, a timestamp and the sha256 of the body with its ed25519
key; the receiver checks the signature with the public key it registered for the sender. Nothing
else authenticates these requests: no password, no cookie.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import SignatureRejected

SENDER = "X-Classbox-Sender"
TIME = "X-Classbox-Time"
SIGNATURE = "X-Classbox-Signature"


def message(method: str, path: str, timestamp: int, body: bytes) -> bytes:
    """Return the bytes a request's signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return f"classbox-request-v1\n{method.upper()}\n{path}\n{timestamp}\n{digest}".encode()


def sign_request(key: Ed25519PrivateKey, sender: str, method: str, path: str, body: bytes,
                 now: float | None = None) -> dict[str, str]:
    """Return the headers that sign a request from sender (its box id)."""
    timestamp = int(time.time() if now is None else now)
    signature = key.sign(message(method, path, timestamp, body))
    return {SENDER: sender, TIME: str(timestamp), SIGNATURE: base64.b64encode(signature).decode()}


def sender_of(headers: Mapping[str, str]) -> str:
    """Return who a request says it is from, or raise SignatureRejected if it does not say."""
    sender = headers.get(SENDER, "")
    if not sender:
        raise SignatureRejected(f"the request is not signed (no {SENDER} header)")
    return sender


def verify_request(key: Ed25519PublicKey, headers: Mapping[str, str], method: str, path: str, body: bytes,
                   max_skew: float | None = None, now: float | None = None) -> None:
    """Raise SignatureRejected unless the request is signed by key (and, with max_skew, recent)."""
    try:
        timestamp = int(headers.get(TIME, ""))
        signature = base64.b64decode(headers.get(SIGNATURE, ""), validate=True)
    except ValueError:
        raise SignatureRejected(f"the request's {TIME} or {SIGNATURE} header is missing or malformed") from None
    try:
        key.verify(signature, message(method, path, timestamp, body))
    except InvalidSignature:
        raise SignatureRejected("the request's signature does not match the key registered for its sender") from None
    if max_skew is not None and abs((time.time() if now is None else now) - timestamp) > max_skew:
        raise SignatureRejected(f"the request was signed at {timestamp}, too far from now; replayed, or a clock is off")
