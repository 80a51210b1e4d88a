"""[upstream] as check-config and the daemon see it: the signing secret is required, private,
and a whsec_ value; the bounds of the backoff are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridnode.cli import main
from gridnode.deliveries import signing


def check(capsys: pytest.CaptureFixture[str], cfg: Path) -> tuple[int, str, str]:
    code = main(["check-config", str(cfg)])
    out = capsys.readouterr()
    return code, out.out, out.err


def write(tmp_path: Path, upstream: str) -> Path:
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[node]\nid = "x"\ndata_dir = "{tmp_path / "data"}"\n[api]\nenabled = false\n'
                   f'[upstream]\nurl = "http://127.0.0.1:9/v1/deliveries"\n{upstream}')
    return cfg


def test_a_secret_is_required(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    code, _, err = check(capsys, write(tmp_path, ""))
    assert code == 2
    assert "upstream.secret_file = <missing>: expected a file holding the whsec_ signing secret" \
        in err


def test_the_secret_must_be_private_and_a_whsec_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "up.secret"
    secret.write_text(signing.generate_secret() + "\n")
    secret.chmod(0o644)
    code, _, err = check(capsys, write(tmp_path, f'secret_file = "{secret}"\n'))
    assert code == 2 and "mode 0600; it is 0644" in err
    secret.chmod(0o600)
    secret.write_text("not-a-secret\n")
    code, _, err = check(capsys, write(tmp_path, f'secret_file = "{secret}"\n'))
    assert code == 2 and "one or two whsec_ secrets" in err


def test_a_good_section_is_summarised(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "up.secret"
    assert main(["deliveries", "secret", str(secret)]) == 0
    capsys.readouterr()
    code, out, err = check(capsys, write(tmp_path, f'secret_file = "{secret}"\nbatch_size = 20\n'))
    assert code == 0, err
    assert (f"  upstream: http://127.0.0.1:9/v1/deliveries, 20 items per request, signed with "
            f"the systemd credential upstream-secret or {secret}") in out.splitlines()


def test_the_backoff_bounds_are_checked(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(capsys, write(tmp_path, "retry_base_s = 60\nretry_max_s = 10\n"))
    assert code == 2 and "retry_base_s (60.0) at most retry_max_s (10.0)" in err
