"""What the submitter says at info about operations it cannot send yet."""

from __future__ import annotations

import logging

import pytest

from gridnode.chain.instructions import Refused
from gridnode.chain.validation import InvalidInput, RuleNotMet
from gridnode.outbox.submitter import _log_refused


def test_a_round_of_refusals_is_one_line_per_outcome_and_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    """50 meter registrations waiting for their owner's are one line, not 50."""
    caplog.set_level(logging.INFO, logger="gridnode.outbox.submitter")
    waiting = [Refused(i, RuleNotMet("user_not_registered", "user U is not registered on chain"))
               for i in range(2, 52)]
    _log_refused([*waiting, Refused(60, InvalidInput("bad_meter", "meter id too long"))])
    got = [(r.getMessage(), getattr(r, "gridnode_fields", {})) for r in caplog.records
           if r.name == "gridnode.outbox.submitter" and r.levelno == logging.INFO]
    assert [(m, f["ops"], f["code"]) for m, f in got] == [
        ("operations not sent", 50, "user_not_registered"),
        ("operations not sent", 1, "bad_meter")]
    assert got[0][1]["op_ids"] == "2,3,4,5,6,... (50)" and got[1][1]["op_ids"] == "60"
    assert "is not registered on chain" in got[0][1]["error"]
