"""The background loops of a `conveyor worker` process: the engine's (follow the event log,
advance due runs, sweep date triggers and time-based segments) and delivery's (drain the
outbox, so a slow provider never holds up the engine), each in its own thread.

Polling keeps it correct; everything it does is a transaction that also moves its cursor, so a
killed process resumes where it stopped.
"""

from __future__ import annotations

import enum
import logging
import threading
import time

from conveyor.bootstrap import Conveyor
from conveyor.services.ops import worker_name

log = logging.getLogger("conveyor.worker")


class Role(enum.StrEnum):
    ALL = "all"
    ENGINE = "engine"
    DELIVERY = "delivery"


def engine_round(conveyor: Conveyor, *, sweep_dates: bool, sweep_segments: bool) -> int:
    """The engine's work that is due now, once; how much of the log and the runs it handled
    (0: nothing was waiting).

    The only code that calls the engine's services. `engine.dispatch` is one pass over the log
    for segment membership and the engine together (one read, one transaction); `execute`
    advances runs whose timer is due; `scoring.sweep` records the threshold crossings decay
    made by now. The log comes first, so a sweep that keeps failing holds
    up no event.
    """
    engine = conveyor.engine
    work = engine.pending()  # one statement asks every queue below whether it holds work
    done = 0
    if work.log or work.steps:
        done += engine.dispatch(work=work)
    if work.scores:
        done += conveyor.scoring.sweep(looked=True)
    if work.runs:
        done += engine.execute(looked=True)
    # Campaigns start (freeze and queue) and finish; bulk jobs go a few chunks at a time.
    if work.campaigns:
        done += conveyor.campaigns.run_due()
    if work.bulk:
        done += conveyor.bulk_jobs.run(looked=True)
    if sweep_dates:
        conveyor.engine.sweep_dates()
        conveyor.tasks.sweep_overdue()
        conveyor.scoring.arm()  # thresholds of automations activated since (once a minute)
        conveyor.experiments.check()  # split tests that can be decided now
        conveyor.deliverability.check()  # mailbox providers' complaint and bounce rates
    if sweep_segments:
        conveyor.segments.sweep()
    return done


class BackgroundLoop:
    """The loops of one role, in threads; `stop` lets each finish its current transaction."""

    def __init__(
        self,
        conveyor: Conveyor,
        role: Role = Role.ALL,
        *,
        poll_seconds: float = 0.5,
        dates_seconds: float = 60,
        sweep_seconds: float = 300,
    ) -> None:
        self.conveyor = conveyor
        self.role = role
        self.poll_seconds = poll_seconds
        self.dates_seconds = dates_seconds
        self.sweep_seconds = sweep_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.worker = worker_name()

    def run_engine(self) -> None:
        next_dates = next_sweep = time.monotonic()
        pause = 0.0
        while not self._stop.is_set():
            done = 0
            try:
                now = time.monotonic()
                dates, sweep = now >= next_dates, now >= next_sweep
                done = engine_round(self.conveyor, sweep_dates=dates, sweep_segments=sweep)
                if dates:
                    next_dates = now + self.dates_seconds
                if sweep:
                    next_sweep = now + self.sweep_seconds
            except Exception:  # keep the loop alive; the work is retried on the next round
                log.exception(
                    "engine round failed; retrying",
                    extra={"worker": self.worker, "loop": "engine"},
                )
            if not done:
                # Busy a moment ago: look again soon (an event arriving now waits for this pause,
                # and a look costs one unlocked statement). Idle: back off to `poll_seconds`.
                pause = min(max(pause * 2, 0.01), self.poll_seconds)
                self._stop.wait(pause)
            else:
                pause = 0.0

    def run_delivery(self) -> None:
        delivery = self.conveyor.delivery
        try:
            while not self._stop.is_set():
                done = 0
                try:
                    done = delivery.deliver()
                except Exception:  # the claimed messages come back when their lease runs out
                    log.exception(
                        "delivery round failed; its messages return when their lease ends",
                        extra={"worker": self.worker, "loop": "delivery"},
                    )
                if not done:
                    self._stop.wait(self.poll_seconds)
        finally:
            delivery.close()

    def run_heartbeat(self) -> None:
        """Tell `/readyz` this worker is alive, every `heartbeat_seconds`; gone when it stops.

        Its own thread: a beat says the process runs and reaches the database, not that a round
        finished (a long tick must not read as a dead worker)."""
        ops = self.conveyor.ops
        started = self.conveyor.clock.now()
        seconds = self.conveyor.settings.heartbeat_seconds
        failing = False
        while True:
            try:
                ops.beat(self.worker, str(self.role), started)
                if failing:
                    log.info("heartbeat recorded again", extra={"worker": self.worker})
                failing = False
            except Exception as exc:
                if not failing:  # once per outage, not every beat
                    log.warning(
                        "heartbeat failed: %s", type(exc).__name__, extra={"worker": self.worker}
                    )
                failing = True
            if self._stop.wait(seconds):
                break
        try:
            ops.stopped(self.worker)
        except Exception:
            log.warning("could not remove the heartbeat of %s", self.worker)

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the background loop is running already")
        targets = {
            Role.ENGINE: self.run_engine,
            Role.DELIVERY: self.run_delivery,
            "heartbeat": self.run_heartbeat,
        }
        for role, target in targets.items():
            if role == "heartbeat" or self.role in (Role.ALL, role):
                thread = threading.Thread(target=target, name=f"conveyor-{role}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a stop request; whether there was one."""
        return self._stop.wait(timeout)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
