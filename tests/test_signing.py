"""Signed requests: a hub and a box trust each other's ed25519 keys, nothing else."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from classbox.errors import SignatureRejected
from classbox.signing import SIGNATURE, TIME, sender_of, sign_request, verify_request


def test_a_signed_request_verifies_and_any_change_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    body = b'{"events": []}'
    headers = sign_request(key, "0123456789abcdef", "POST", "/api/v1/reports", body, now=1000)
    assert sender_of(headers) == "0123456789abcdef"
    verify_request(key.public_key(), headers, "POST", "/api/v1/reports", body)
    for method, path, changed in (("POST", "/api/v1/reports", b'{"events": [1]}'), ("PUT", "/api/v1/reports", body),
                                  ("POST", "/api/v1/notify", body)):
        with pytest.raises(SignatureRejected, match="does not match"):
            verify_request(key.public_key(), headers, method, path, changed)
    with pytest.raises(SignatureRejected, match="does not match"):
        verify_request(Ed25519PrivateKey.generate().public_key(), headers, "POST", "/api/v1/reports", body)
    with pytest.raises(SignatureRejected, match="does not match"):
        verify_request(key.public_key(), {**headers, TIME: "1001"}, "POST", "/api/v1/reports", body)


def test_old_or_unsigned_requests_are_refused() -> None:
    key = Ed25519PrivateKey.generate()
    headers = sign_request(key, "box", "POST", "/api/v1/notify", b"", now=1000)
    verify_request(key.public_key(), headers, "POST", "/api/v1/notify", b"", max_skew=600, now=1500)
    with pytest.raises(SignatureRejected, match="too far from now"):
        verify_request(key.public_key(), headers, "POST", "/api/v1/notify", b"", max_skew=600, now=2000)
    with pytest.raises(SignatureRejected, match="not signed"):
        sender_of({})
    with pytest.raises(SignatureRejected, match="malformed"):
        verify_request(key.public_key(), {**headers, SIGNATURE: "not base64!"}, "POST", "/api/v1/notify", b"")
