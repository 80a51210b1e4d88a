"""Keypair files: created private, never overwritten, refused when others can read them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gridnode.keys import KeyFileError, generate_keypair_file, load_keypair


def test_generate_writes_a_private_solana_keypair(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "gateway.json"
    old_umask = os.umask(0)
    try:
        kp = generate_keypair_file(path)
    finally:
        os.umask(old_umask)
    assert os.stat(path).st_mode & 0o777 == 0o600
    raw = json.loads(path.read_text())
    assert len(raw) == 64 and all(0 <= b <= 255 for b in raw)
    assert load_keypair(path).pubkey() == kp.pubkey()


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    generate_keypair_file(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keypair_file(path)
    assert path.read_bytes() == before


def test_load_refuses_readable_files_without_showing_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    generate_keypair_file(path)
    secret = path.read_text()
    path.chmod(0o640)
    with pytest.raises(KeyFileError) as exc:
        load_keypair(path)
    assert "group or others" in str(exc.value) and "chmod 600" in str(exc.value)
    assert "0640" in str(exc.value)
    assert secret not in str(exc.value)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(list(range(63))))
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="64 numbers"):
        load_keypair(bad)
    tampered = tmp_path / "tampered.json"
    raw = json.loads(secret)
    raw[40] ^= 1
    tampered.write_text(json.dumps(raw))
    tampered.chmod(0o600)
    with pytest.raises(KeyFileError, match="does not match") as exc:
        load_keypair(tampered)
    assert str(raw[:8])[1:-1] not in str(exc.value)
