"""Standard Webhooks signing, checked against the specification's published test vector and a
verifier written here from the specification (not gridnode's)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from gridnode.deliveries import signing

# The specification's test vector (standard-webhooks/standard-webhooks).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def spec_verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """The specification's receiver: HMAC-SHA256 keyed with the base64-decoded part after
    whsec_, over id.timestamp.body; any space-separated v1 entry may match; +-5 minutes."""
    if abs(now - int(headers["webhook-timestamp"])) > 300:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for entry in headers["webhook-signature"].split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return True
    return False


def test_the_specifications_vector() -> None:
    assert signing.signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS),
               "webhook-signature": VECTOR_SIGNATURE}
    assert signing.verify([VECTOR_SECRET], headers, VECTOR_BODY, now=VECTOR_TS + 10) == VECTOR_ID
    assert spec_verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS)


def test_what_gridnode_signs_verifies_by_the_specification_and_nothing_altered_does() -> None:
    secret = signing.generate_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    body = b'{"node_id":"n","items":[]}'
    headers = signing.sign([secret], "b_0123abcd", body)
    now = time.time()
    assert abs(int(headers["webhook-timestamp"]) - now) <= 1
    assert spec_verify(secret, headers, body, now)
    assert not spec_verify(secret, headers, body + b" ", now)
    assert not spec_verify(secret, {**headers, "webhook-id": "b_other"}, body, now)
    assert not spec_verify(secret, {**headers, "webhook-timestamp": str(int(now) - 1)}, body, now)
    assert not spec_verify(signing.generate_secret(), headers, body, now)


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    body = b"{}"
    headers = signing.sign([old, new], "msg_1", body)
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    now = time.time()
    assert spec_verify(old, headers, body, now) and spec_verify(new, headers, body, now)
    assert signing.verify([new], headers, body) == "msg_1"
    assert signing.verify([old], headers, body) == "msg_1"


def test_gridnodes_verifier_refuses_what_it_must() -> None:
    secret = signing.generate_secret()
    body = b"{}"
    headers = signing.sign([secret], "msg_1", body, timestamp=int(time.time()) - 301)
    with pytest.raises(signing.VerificationError, match="outside"):
        signing.verify([secret], headers, body)
    fresh = signing.sign([secret], "msg_1", body)
    with pytest.raises(signing.VerificationError, match="no v1 signature"):
        signing.verify([signing.generate_secret()], fresh, body)
    with pytest.raises(signing.VerificationError, match="no v1 signature"):
        signing.verify([secret], {**fresh, "webhook-signature": "v1a,"
                                  + fresh["webhook-signature"][3:]}, body)
    with pytest.raises(signing.VerificationError, match="missing"):
        signing.verify([secret], {"webhook-id": "x"}, body)
    upper = {k.upper(): v for k, v in fresh.items()}        # header names are case-insensitive
    assert signing.verify([secret], upper, body) == "msg_1"


@pytest.mark.parametrize("bad", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ=",
                                 "whsec_not base64!"])
def test_unusable_secrets_are_refused(bad: str) -> None:
    with pytest.raises(signing.SigningError):
        signing.secret_key(bad)


def test_a_message_id_with_a_dot_is_refused() -> None:
    with pytest.raises(signing.SigningError):
        signing.sign([signing.generate_secret()], "a.b", b"{}")


def test_a_secret_file_holds_one_or_two_secrets() -> None:
    a, b = signing.generate_secret(), signing.generate_secret()
    assert signing.parse_secrets(f"{a}\n") == [a]
    assert signing.parse_secrets(f"{a}\n{b}\n") == [a, b]
    with pytest.raises(signing.SigningError):
        signing.parse_secrets("")
    with pytest.raises(signing.SigningError):
        signing.parse_secrets(f"{a} {b} {a}")
