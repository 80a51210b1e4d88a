"""Backoff: full jitter between retry_base_s and a doubling cap, and Retry-After parsing."""

from __future__ import annotations

import email.utils
import random

import pytest

from gridnode.deliveries.backoff import RETRY_AFTER_MAX_S, Backoff, retry_after


def test_full_jitter_stays_between_the_base_and_a_doubling_cap() -> None:
    b = Backoff(5.0, 600.0, random.Random(1))
    assert [b.cap(n) for n in (1, 2, 3, 4, 8, 50)] == [5, 10, 20, 40, 600, 600]
    for attempt in range(1, 30):
        draws = [b.delay(attempt) for _ in range(200)]
        assert all(5.0 <= d <= b.cap(attempt) for d in draws)
    wide = [b.delay(10) for _ in range(2000)]
    assert min(wide) < 60 and max(wide) > 540          # spread over the range, not clustered


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        Backoff(10.0, 5.0)
    with pytest.raises(ValueError):
        Backoff(0.0, 5.0)


def test_retry_after_as_seconds_or_a_date() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(" 0 ") == 0.0
    assert retry_after(None) is None and retry_after("") is None and retry_after("soon") is None
    assert retry_after("999999999") == RETRY_AFTER_MAX_S
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert retry_after(date, now=now) == 90.0
    assert retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0.0
