"""Pacing for a teacher behind an API: token buckets, backoff with jitter, Retry-After.

    limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=90_000)
    await limiter.acquire(tokens=estimate)       # waits until both buckets allow it
    delay = backoff_delay(attempt=2, base_s=1, max_s=60, rng=rng)

Everything here runs on one event loop; nothing is thread-safe by itself.
"""

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Mapping


class TokenBucket:
    """`rate_per_minute` units refill continuously, up to `capacity` (default: six seconds'
    worth, at least 1), so a burst never exceeds what a provider allows in a short window.

    A take larger than the capacity waits for a full bucket and then drives the level
    negative, so an oversized request still goes through, and the next ones wait for it.
    """

    def __init__(
        self,
        rate_per_minute: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be above 0")
        self.rate = rate_per_minute / 60.0  # units per second
        self.capacity = capacity if capacity is not None else max(1.0, rate_per_minute / 10)
        self.level = self.capacity
        self.clock = clock
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` can be taken (0 when it can be taken now)."""
        self._refill()
        need = min(amount, self.capacity)
        return max(0.0, (need - self.level) / self.rate)

    def take(self, amount: float) -> None:
        """Remove `amount` now (the level may go below 0)."""
        self._refill()
        self.level -= amount

    def give_back(self, amount: float) -> None:
        """Return units taken for a request that used fewer than estimated (or none)."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute buckets; either may be absent."""

    def __init__(
        self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None
    ) -> None:
        self.requests = TokenBucket(requests_per_minute) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: float) -> None:
        """Wait until one request of about `tokens` tokens fits both limits, then take it."""
        async with self._lock:  # first come, first served: no starvation of large requests
            while True:
                wait = max(
                    self.requests.wait_time(1) if self.requests else 0.0,
                    self.tokens.wait_time(tokens) if self.tokens else 0.0,
                )
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(tokens)

    def settle(self, estimated: float, used: float) -> None:
        """Correct the token bucket once the real usage of a request is known."""
        if self.tokens and used != estimated:
            if used < estimated:
                self.tokens.give_back(estimated - used)
            else:
                self.tokens.take(used - estimated)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(max_s, base_s * 2**attempt).

    `attempt` counts from 0 (the wait after the first failure). Half the delay is kept so
    retries never collapse to zero; the other half spreads clients apart.
    """
    delay = min(max_s, base_s * (2**attempt))
    return delay * (0.5 + 0.5 * rng.random())


def retry_after_seconds(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """The server's requested wait: `retry-after-ms`, or `retry-after` in seconds or as a date."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
