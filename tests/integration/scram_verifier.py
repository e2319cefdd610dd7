"""SCRAM-SHA-256 verifiers as PostgreSQL stores them, made with Python's hashlib (RFC 5802
section 3, RFC 7677), independent of ironsight's code: for the users-file tests and the
authenticated connection storm."""

from __future__ import annotations

import base64
import hashlib
import hmac


def verifier(password: bytes, salt: bytes, iterations: int = 4096) -> str:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64 parts."""
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
