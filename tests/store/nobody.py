"""Running a command as `nobody`, so that file modes bind even when the tests run as root."""

from __future__ import annotations

import os
import shutil

import pytest


def as_nobody() -> list[str]:
    """The prefix that runs a command without root (none needed when not root); skips the test
    when root cannot drop its rights here."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be tested")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
