"""Who is asking: HS256 JWTs with `sub`, `role` and `exp`, and a token bucket per subject.

Roles: `operator` may do everything; `monitor` reads everything and changes nothing; `user` (a
wallet, `sub` = its base58 public key) sees the operations and meters it owns and creates only
operations it signs. A token comes in ``Authorization: Bearer`` or, for a browser (which cannot
put a header on a WebSocket), in the HttpOnly cookie `COOKIE`; a cookie is accepted on a
state-changing request or a WebSocket only from the node's own origin.

The secret is the systemd credential ``api-jwt`` or `[api] jwt_secret_file` (owner-only, at least
32 bytes), never the configuration itself.
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from gridnode.config import ConfigError, ConfigIssue
from gridnode.config.api import CREDENTIAL, ApiConfig

ALGORITHM = "HS256"
COOKIE = "gridnode_token"
MIN_SECRET_BYTES = 32
LEEWAY_S = 5


class Role(StrEnum):
    OPERATOR = "operator"
    USER = "user"
    MONITOR = "monitor"


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    exp: int
    via_cookie: bool = False

    @property
    def writes(self) -> bool:
        return self.role is not Role.MONITOR


class TokenError(Exception):
    """The token is missing, malformed, badly signed, expired or lacks a claim; the text says
    which (never the token)."""


@dataclass(frozen=True)
class Secret:
    value: bytes
    source: str          # where it came from, for logs and check-config


def load_secret(cfg: ApiConfig, source: str,
                environ: dict[str, str] | None = None) -> Secret | None:
    """The JWT secret: the systemd credential first, then `jwt_secret_file`; None when neither
    is there. ConfigError names the key when a configured file cannot be used."""
    env = os.environ if environ is None else environ
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / CREDENTIAL).is_file():
        path = Path(creds) / CREDENTIAL
        return Secret(read_secret_file(path, source, "api (systemd credential)", check_mode=False),
                      f"systemd credential {CREDENTIAL}")
    if cfg.jwt_secret_file is None:
        return None
    return Secret(read_secret_file(cfg.jwt_secret_file, source, "api.jwt_secret_file", check_mode=True),
                  str(cfg.jwt_secret_file))


def read_secret_file(path: Path, source: str, key: str, *, check_mode: bool) -> bytes:
    """The secret in `path`; ConfigError at `key` when it is unreadable, too short or (with
    `check_mode`) readable by others."""
    def bad(what: str) -> ConfigError:
        return ConfigError([ConfigIssue(source, key, repr(str(path)), what)])

    try:
        st = path.stat()
        if check_mode and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise bad(f"a file only its owner can read (mode 0600; it is "
                      f"{stat.S_IMODE(st.st_mode):04o}): the secret signs every API token")
        value = path.read_bytes().strip()
    except OSError as exc:
        raise bad(f"a readable file holding the JWT secret ({exc.strerror})") from None
    if len(value) < MIN_SECRET_BYTES:
        raise bad(f"a secret of at least {MIN_SECRET_BYTES} bytes (it has {len(value)}; "
                  "e.g. head -c 48 /dev/urandom | base64)")
    return value


def issue(secret: Secret, sub: str, role: Role, ttl_s: float, now: float | None = None) -> str:
    """A signed token for `sub` in `role`, valid for `ttl_s` seconds."""
    iat = int(time.time() if now is None else now)
    claims = {"sub": sub, "role": str(role), "iat": iat, "exp": iat + math.ceil(ttl_s)}
    import jwt  # here, not at import: a node without a secret never needs it

    return jwt.encode(claims, secret.value, algorithm=ALGORITHM)


def decode(secret: Secret, token: str, via_cookie: bool = False) -> Principal:
    """The principal of a valid token; TokenError says why a token is refused."""
    import jwt  # here, not at import: a node without a secret never needs it

    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret.value, algorithms=[ALGORITHM], leeway=LEEWAY_S,
            options={"require": ["sub", "role", "exp"]})
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"the token has no {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise TokenError("the token's signature does not match this node's secret") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError(f"the token is not signed with {ALGORITHM}") from None
    except jwt.PyJWTError:
        raise TokenError("the token is not a well-formed JWT") from None
    sub, role = claims["sub"], claims["role"]
    if not isinstance(sub, str) or not sub:
        raise TokenError("the token's 'sub' claim is not a non-empty string")
    try:
        parsed = Role(role)
    except ValueError:
        raise TokenError(f"the token's role must be one of {', '.join(Role)}") from None
    return Principal(sub, parsed, int(claims["exp"]), via_cookie)


class RateLimiter:
    """A token bucket per key: `rate` requests per second on average, bursts up to `burst`.

    Keys are token subjects (or a client address for requests without a valid token); the least
    recently used buckets are forgotten past `max_keys`, so memory stays bounded.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 4096) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """0 when a request may go ahead (and is counted), else the seconds to wait."""
        t = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, t))
        tokens = min(self.burst, tokens + (t - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, t)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
