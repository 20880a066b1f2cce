"""A token bucket for providers' rate limits (messages per second, with a burst)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Bucket(Protocol):
    async def take(self) -> None:
        """Wait until one more message may go."""


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take()` waits for one.

    It measures real elapsed time (a provider's limit is in real seconds, whatever the
    engine's clock says), with the monotonic clock so wall-clock jumps do not matter.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
