"""Fixtures for the reference programs: a fresh LiteSVM chain per test."""

from __future__ import annotations

import pytest

from simulators.chain.harness import (  # noqa: F401  (re-exported for the test modules)
    ATA_PROGRAM,
    IX_SYSVAR,
    NOW,
    RENT_SYSVAR,
    SYSTEM_PROGRAM,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    Chain,
    Outcome,
)
from simulators.chain.svm import PROGRAMS_DIR


@pytest.fixture
def chain() -> Chain:
    missing = [n for n in ("oracle", "registry", "energy_token") if not (PROGRAMS_DIR / f"{n}.so").exists()]
    if missing:
        pytest.fail(f"programs not built: {missing} (make programs)")
    return Chain()
