"""The gateway's Solana keypair on disk: created 0600, refused when others can read it.

The file format is the Solana CLI's: a JSON array of the 64 bytes (secret key then public key).
Nothing here ever logs, prints or puts the secret bytes into an exception message.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from solders.keypair import Keypair

from gridnode.config import ConfigError, ConfigIssue


class KeyFileError(Exception):
    """A keypair file that cannot be used; the message says why and what to do."""


def generate_keypair_file(path: str | Path) -> Keypair:
    """Write a new keypair to `path` (mode 0600, refusing to overwrite) and return it."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise KeyFileError(f"{path} already exists; gridnode never overwrites a keypair "
                           "(move it away first if you really mean to replace it)")
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    keypair = Keypair()
    data = json.dumps(list(bytes(keypair))).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; gridnode never overwrites a keypair") from None
    try:
        os.fchmod(fd, 0o600)   # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return keypair


def load_keypair(path: str | Path) -> Keypair:
    """Load a keypair file, refusing one that group or others can read or write."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise KeyFileError(f"cannot read keypair {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"keypair {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"keypair {path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o});"
            f" a signing key must be private: chmod 600 {path}")
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise KeyFileError(f"keypair {path} is not a JSON array of 64 numbers "
                           "(the Solana CLI keypair format)") from None
    if (not isinstance(raw, list) or len(raw) != 64
            or not all(isinstance(b, int) and 0 <= b <= 255 for b in raw)):
        raise KeyFileError(f"keypair {path} is not a JSON array of 64 numbers 0-255 "
                           "(the Solana CLI keypair format)")
    try:
        keypair = Keypair.from_bytes(bytes(raw))
    except ValueError:
        raise KeyFileError(f"keypair {path}: the public half does not match the secret half") from None
    return keypair


def load_configured_keypairs(file: str, named: Sequence[tuple[str, Path]]) -> list[Keypair]:
    """Load every keypair a configuration names, as (key path, file) pairs, in order.

    A key file that cannot be used is a configuration error, not a runtime failure: ConfigError
    lists every such file by its key (``chain.user_keypairs[1]``), so the operator fixes them in
    one round and systemd does not retry a node that cannot start.
    """
    keypairs: list[Keypair] = []
    issues: list[ConfigIssue] = []
    for key, path in named:
        try:
            keypairs.append(load_keypair(path))
        except KeyFileError as exc:
            issues.append(ConfigIssue(file, key, repr(str(path)), f"a usable keypair file ({exc})"))
    if issues:
        raise ConfigError(issues)
    return keypairs
