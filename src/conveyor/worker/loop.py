"""The background loops `conveyor serve` runs beside the API (and `conveyor worker` runs alone):
one follows the event log (segment membership, then triggers and wake-ups), advances due runs
and sweeps time-based segments; the other delivers the outbox, so a slow provider never holds
up the engine.

Polling keeps it correct; everything it does is a transaction that also moves its cursor, so a
killed process resumes where it stopped.
"""

from __future__ import annotations

import logging
import threading
import time

from conveyor.bootstrap import Conveyor

log = logging.getLogger("conveyor.worker")


class BackgroundLoop:
    def __init__(
        self, conveyor: Conveyor, *, poll_seconds: float = 0.5, sweep_seconds: float = 300
    ) -> None:
        self.conveyor = conveyor
        self.poll_seconds = poll_seconds
        self.sweep_seconds = sweep_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._delivery: threading.Thread | None = None

    def run_once(self) -> int:
        """Work through everything pending in the log; how many events that was."""
        total = 0
        while not self._stop.is_set():
            done = (
                self.conveyor.segments.process_log()
                + self.conveyor.engine.dispatch()
                + self.conveyor.engine.execute()
            )
            total += done
            if done == 0:
                return total
        return total

    def run(self) -> None:
        next_sweep = next_dates = time.monotonic()
        while not self._stop.is_set():
            try:
                self.run_once()
                if time.monotonic() >= next_dates:
                    self.conveyor.engine.sweep_dates()
                    next_dates = time.monotonic() + 60
                if time.monotonic() >= next_sweep:
                    self.conveyor.segments.sweep()
                    next_sweep = next_dates = time.monotonic() + self.sweep_seconds
            except Exception:  # keep the loop alive; the work is retried on the next tick
                log.exception("background loop failed; retrying")
            self._stop.wait(self.poll_seconds)

    def deliver(self) -> None:
        delivery = self.conveyor.delivery
        while not self._stop.is_set():
            try:
                while delivery.deliver() and not self._stop.is_set():
                    pass
            except Exception:  # the claimed messages come back when their lease runs out
                log.exception("delivery failed; retrying")
            self._stop.wait(self.poll_seconds)
        delivery.close()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the background loop is running already")
        self._thread = threading.Thread(target=self.run, name="conveyor-worker", daemon=True)
        self._delivery = threading.Thread(
            target=self.deliver, name="conveyor-delivery", daemon=True
        )
        self._thread.start()
        self._delivery.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in (self._thread, self._delivery):
            if thread is not None:
                thread.join(30)
