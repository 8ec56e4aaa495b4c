"""When a failed attempt is made again: pure, so that a pass, a test or a reader can work it out.

Hand-written rather than a retry library's: the next attempt is due at a time stored with the
flow (``next_attempt_at``), so that backoff holds between passes and across restarts."""

from __future__ import annotations

import random


def retry_delay(attempts: int, initial: float, maximum: float, *, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt: exponential, capped, with ±20 % jitter so that
    flows failed together do not all come back at the same second.

    >>> 48 <= retry_delay(1, 60, 3600) <= 72 and 2880 <= retry_delay(10, 60, 3600) <= 3600
    True
    """
    base = min(maximum, initial * 2 ** max(0, attempts - 1))
    return min(maximum, base * (rng or random).uniform(0.8, 1.2))


def next_retry(attempts: int, *, retryable: bool, max_attempts: int, initial: float, maximum: float,
               rng: random.Random | None = None) -> float | None:
    """Seconds before the attempt after ``attempts`` failed ones; None when there is none: after
    ``max_attempts``, or at once for an error that the same attempt would meet again (host key refused,
    credentials wrong, MDN signature bad).

    >>> next_retry(3, retryable=True, max_attempts=3, initial=60, maximum=3600) is None
    True
    >>> next_retry(1, retryable=False, max_attempts=3, initial=60, maximum=3600) is None
    True
    """
    if attempts >= max_attempts or not retryable:
        return None
    return retry_delay(attempts, initial, maximum, rng=rng)
