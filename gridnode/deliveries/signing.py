"""Standard Webhooks signing (v1: HMAC-SHA256), for upstream requests and webhooks alike.

A request carries three headers: ``webhook-id`` (the message id, unchanged across retries, the
receiver's dedupe key), ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature``: a space-separated list of ``v1,<base64 HMAC-SHA256>`` entries over
``"{id}.{timestamp}.{body}"``, keyed with the base64-decoded part of a ``whsec_`` secret. During a
secret rotation the sender signs with both secrets, so a receiver holding either one accepts the
request and the rotation needs no downtime. Verification compares in constant time and refuses
a timestamp outside a tolerance window (replays of a captured request).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence

PREFIX = "whsec_"
VERSION = "v1"
TOLERANCE_S = 300           # the reference library's window, either side of now
MIN_SECRET_BYTES = 24       # the specification's 192 to 512 bits
MAX_SECRET_BYTES = 64
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class SigningError(ValueError):
    """A secret that cannot be used (not ``whsec_`` + base64 of 24 to 64 bytes)."""


class VerificationError(ValueError):
    """A request whose headers, timestamp or signatures do not verify."""


def generate_secret(nbytes: int = 32) -> str:
    """A new random ``whsec_`` secret of `nbytes` bytes."""
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise SigningError(f"a secret has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    return PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret: its base64 part, decoded."""
    if not secret.startswith(PREFIX):
        raise SigningError(f"a webhook secret starts with {PREFIX!r}")
    text = secret[len(PREFIX):].strip()
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SigningError("the part after whsec_ is not base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise SigningError(f"a webhook secret decodes to {MIN_SECRET_BYTES} to "
                           f"{MAX_SECRET_BYTES} bytes (this one: {len(key)})")
    return key


def _check_id(msg_id: str) -> None:
    if not msg_id or "." in msg_id or not msg_id.isprintable() or " " in msg_id:
        raise SigningError(f"webhook id {msg_id!r}: printable, no spaces, no '.'")


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>``: one secret's signature of the exact body bytes."""
    _check_id(msg_id)
    mac = hmac.new(secret_key(secret), f"{msg_id}.{int(timestamp)}.".encode() + body,
                   hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(mac).decode('ascii')}"


def sign(secrets: Sequence[str], msg_id: str, body: bytes,
         timestamp: int | None = None) -> dict[str, str]:
    """The three headers for `body`, signed with every secret in `secrets` (two while one is
    being rotated out)."""
    if not secrets:
        raise SigningError("no secret to sign with")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {HEADER_ID: msg_id, HEADER_TIMESTAMP: str(ts),
            HEADER_SIGNATURE: " ".join(signature(s, msg_id, ts, body) for s in secrets)}


def verify(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, *,
           tolerance_s: float = TOLERANCE_S, now: float | None = None) -> str:
    """Check a request signed by :func:`sign` against any of `secrets`; returns its webhook id.

    `headers` is looked up case-insensitively when it is a plain dict. Raises VerificationError
    naming what is wrong.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts_text, sigs = (lower.get(HEADER_ID), lower.get(HEADER_TIMESTAMP),
                             lower.get(HEADER_SIGNATURE))
    if not msg_id or not ts_text or not sigs:
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(ts_text)
    except ValueError:
        raise VerificationError(f"webhook-timestamp {ts_text!r} is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise VerificationError(f"webhook-timestamp {ts} is outside +-{tolerance_s:.0f}s of now")
    try:
        expected = [signature(s, msg_id, ts, body).encode() for s in secrets]
    except SigningError as exc:
        raise VerificationError(str(exc)) from None
    for entry in sigs.split():
        version, _, _ = entry.partition(",")
        if version != VERSION:
            continue
        if any(hmac.compare_digest(entry.encode(), e) for e in expected):
            return msg_id
    raise VerificationError("no v1 signature matches")


def parse_secrets(text: str) -> list[str]:
    """The secrets in a secret file: one or two ``whsec_`` values separated by whitespace (the
    first signs; both sign while the second is rolled in). Each is checked."""
    found = text.split()
    if not 1 <= len(found) <= 2:
        raise SigningError(f"expected one or two whsec_ secrets, found {len(found)}")
    for s in found:
        secret_key(s)
    return found
