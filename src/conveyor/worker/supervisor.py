"""`conveyor serve`'s side of its worker processes: start them, restart one that dies (after a
growing pause, logged), and stop them when serve stops."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger("conveyor.worker")


@dataclass
class _Slot:
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    delay: float = 0.0


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Supervisor:
    """Keeps `count` processes of `command` running until `stop`.

    A process that dies is started again after `first_delay` seconds, doubled for each quick
    death in a row up to `max_delay`; one that ran `healthy_after` seconds starts the count over.
    """

    def __init__(
        self,
        command: Sequence[str],
        count: int = 1,
        *,
        env: Mapping[str, str] | None = None,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        healthy_after: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.command = list(command)
        self.env = dict(env) if env is not None else None
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.healthy_after = healthy_after
        self.stop_timeout = stop_timeout
        self._slots = [_Slot(delay=first_delay) for _ in range(count)]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [s.proc.pid for s in self._slots if s.proc is not None]

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the supervisor is running already")
        self._check()
        self._thread = threading.Thread(target=self._watch, name="conveyor-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            self._check()

    def _check(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            now = time.monotonic()
            for number, slot in enumerate(self._slots, 1):
                if slot.proc is None:
                    if now >= slot.restart_at:
                        self._spawn(number, slot, now)
                    continue
                code = slot.proc.poll()
                if code is None:
                    continue
                if now - slot.started >= self.healthy_after:
                    slot.delay = self.first_delay
                log.warning(
                    "worker %d (pid %d) ended, %s, after %.1f s; starting it again in %.0f s",
                    number,
                    slot.proc.pid,
                    describe_exit(code),
                    now - slot.started,
                    slot.delay,
                )
                slot.proc, slot.restart_at = None, now + slot.delay
                slot.delay = min(slot.delay * 2, self.max_delay)

    def _spawn(self, number: int, slot: _Slot, now: float) -> None:
        try:
            # Its own session: a Ctrl-C in serve's terminal reaches serve alone, which then stops
            # the worker itself, rather than both stopping at once and racing the restart.
            slot.proc = subprocess.Popen(
                self.command, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        except OSError:
            log.exception("could not start worker %d; trying again in %.0f s", number, slot.delay)
            slot.restart_at = now + slot.delay
            slot.delay = min(slot.delay * 2, self.max_delay)
            return
        slot.started = now
        log.info("started worker %d (pid %d)", number, slot.proc.pid)

    def stop(self) -> None:
        """SIGTERM every worker (each finishes its current transaction), SIGKILL the late ones."""
        with self._lock:
            self._stopping.set()
            procs = [s.proc for s in self._slots if s.proc is not None]
        if self._thread is not None:
            self._thread.join()
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + self.stop_timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker (pid %d) did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
