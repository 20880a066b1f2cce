"""A provider's rate limit shared by every worker process (issue 19: an SMTP server's `rate=` was
per process, so N workers sent N times the rate the provider allows).

Tokens live in the database (`store/ratelimits.py`): a worker draws a quarter second's worth at
a time and spends them locally, so the whole deployment never exceeds `rate` a second plus one
burst, at one small transaction per draw. Limits are in real seconds (a provider's clock), so
the wall clock decides, whatever clock the engine is given.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from conveyor.store.store import Store


class SharedBucket:
    def __init__(
        self,
        store: Store,
        key: str,
        rate: float,
        burst: float | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be positive")
        self.store = store
        self.key = key
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.now = now
        self._have = 0
        self._lock = asyncio.Lock()

    def draw(self) -> int:
        """Tokens from the shared bucket, at most a quarter second's worth (0: none left now)."""
        want = max(1, math.ceil(self.rate / 4))
        return self.store.transact(
            lambda tx: tx.rate_limits.take(self.key, want, self.rate, self.burst, self.now())
        )

    async def take(self) -> None:
        """One token, waiting until the deployment's rate allows it."""
        async with self._lock:
            while self._have == 0:
                self._have = await asyncio.to_thread(self.draw)
                if self._have == 0:
                    await asyncio.sleep(min(1.0, 1 / self.rate))
            self._have -= 1
