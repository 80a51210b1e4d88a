"""How long a destination waits before trying again.

Exponential with full jitter (a uniform draw up to the exponential cap, AWS Architecture blog
"Exponential Backoff and Jitter"): the fewest calls and the least contention when many senders
retry at once. The draw never goes below `base_s`, so a failing destination is never hammered
in a tight loop, and never above `max_s`. A receiver's ``Retry-After`` (429, 503) wins over the
computed delay.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field

RETRY_AFTER_MAX_S = 86400.0     # a larger Retry-After is taken as a day


@dataclass(slots=True)
class Backoff:
    base_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < base_s <= max_s (got {self.base_s}, "
                             f"{self.max_s})")

    def cap(self, attempt: int) -> float:
        """The upper bound of the draw after `attempt` consecutive failures (1 = the first)."""
        exp = min(max(attempt, 1) - 1, 60)
        return min(self.max_s, self.base_s * (2 ** exp))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after `attempt` consecutive failures: uniform in [base_s, cap]."""
        return self.rng.uniform(self.base_s, self.cap(attempt))


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), else None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return min(float(text), RETRY_AFTER_MAX_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), RETRY_AFTER_MAX_S)
