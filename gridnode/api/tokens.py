"""``gridnode token``: make the API's secret and issue tokens signed with it.

``gridnode token secret PATH`` writes a new random secret (mode 0600, never overwriting), for
`[api] jwt_secret_file` or for ``systemd-creds encrypt`` into the ``api-jwt`` credential.
``gridnode token issue --role R --sub S --ttl 1h`` prints one token on stdout (its expiry on
stderr), so ``TOKEN=$(gridnode token issue ...)`` works.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gridnode.api.auth import Role, Secret, issue, load_secret, read_secret_file
from gridnode.config import ConfigError, ConfigIssue, load_config
from gridnode.types import check_pubkey

MAX_TTL_S = 366 * 86400
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """Seconds in ``90``, ``90s``, ``15m``, ``1h`` or ``7d``; ValueError naming the rule."""
    m = _TTL.match(text.strip())
    seconds = int(m.group(1)) * _UNITS[m.group(2)] if m else 0
    if not 0 < seconds <= MAX_TTL_S:
        raise ValueError(f"--ttl {text!r}: expected a duration such as 90s, 15m, 1h or 7d, "
                         f"at most {MAX_TTL_S // 86400}d")
    return seconds


def add_commands(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                 with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
                 ) -> None:
    """The ``token`` command group of the gridnode CLI."""
    tok = sub.add_parser("token", help="API tokens").add_subparsers(
        dest="token_command", required=True, metavar="COMMAND")
    p = with_config(tok.add_parser("issue", help="print a signed API token"))
    p.add_argument("--role", required=True, choices=[str(r) for r in Role])
    p.add_argument("--sub", required=True, help="the subject: a wallet's public key for the "
                   "user role, a name for operator and monitor")
    p.add_argument("--ttl", default="1h", help="validity, e.g. 15m, 1h, 7d (default 1h)")
    p.add_argument("--secret-file", help="the secret (default: the systemd credential api-jwt, "
                   "else [api] jwt_secret_file)")
    p.set_defaults(fn=cmd_issue)
    p = tok.add_parser("secret", help="write a new random secret file (mode 0600)")
    p.add_argument("path")
    p.set_defaults(fn=cmd_secret)


def cmd_issue(args: argparse.Namespace) -> int:
    from gridnode.cli import UsageError, _config_path

    role = Role(args.role)
    try:
        ttl = parse_ttl(args.ttl)
        if role is Role.USER:
            check_pubkey(args.sub)
        elif not 0 < len(args.sub) <= 128 or not args.sub.isprintable():
            raise ValueError("--sub: expected a name of 1-128 printable characters")
    except ValueError as exc:
        what = str(exc) if role is not Role.USER or "ttl" in str(exc) else (
            f"--sub {args.sub!r}: a user is a wallet: expected {exc}")
        raise UsageError(what) from None
    if args.secret_file:
        secret = Secret(read_secret_file(Path(args.secret_file), "--secret-file", "--secret-file",
                              check_mode=True), args.secret_file)
    else:
        cfg = load_config(_config_path(args))
        found = load_secret(cfg.api, cfg.source)
        if found is None:
            raise ConfigError([ConfigIssue(cfg.source, "api.jwt_secret_file", "<missing>",
                                           "a secret file (gridnode token secret PATH makes one),"
                                           " or --secret-file")])
        secret = found
    now = time.time()
    sys.stdout.write(issue(secret, args.sub, role, ttl, now) + "\n")
    sys.stderr.write(f"{role} token for {args.sub}, valid until "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now + ttl))}\n")
    return 0


def cmd_secret(args: argparse.Namespace) -> int:
    from gridnode.cli import CliError

    path = Path(args.path)
    value = base64.b64encode(secrets.token_bytes(48)) + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{path} already exists; a secret is never overwritten (every token "
                       "signed with it would stop working)") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, value)
        os.fsync(fd)
    finally:
        os.close(fd)
    sys.stdout.write(f"wrote {path} (mode 0600); set [api] jwt_secret_file = \"{path}\"\n")
    return 0
