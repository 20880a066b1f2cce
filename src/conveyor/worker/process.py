"""A worker process's life: its loops run until SIGTERM or Ctrl-C (each finishes its current
transaction), or until the `conveyor serve` that started it is gone."""

from __future__ import annotations

import gc
import logging
import os
import signal
from types import FrameType

from conveyor.bootstrap import Conveyor
from conveyor.worker.loop import BackgroundLoop, Role

log = logging.getLogger("conveyor.worker")
PARENT_CHECK_SECONDS = 1.0
# A tick allocates tens of thousands of short-lived rows, dicts and records, nearly none of them
# in reference cycles; at CPython's default threshold (700 allocations) the cyclic collector
# runs hundreds of times per tick, each pass walking every object the tick holds. Measured on
# the engine benchmark: 25-35 % of a worker's CPU. Refcounting still frees everything at once.
GC_THRESHOLD = (100_000, 10, 10)


def tune_gc() -> None:
    """Fewer cyclic-GC passes for a process that runs engine ticks; the objects alive at
    start-up (modules, the parsed catalog) are frozen out of every later pass."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def run_worker(
    conveyor: Conveyor,
    role: Role = Role.ALL,
    *,
    parent: int | None = None,
    metrics: tuple[str, int] | None = None,
) -> None:
    """Run the loops of `role` in this (main) thread's process until told to stop.

    `parent`: the pid of the serve that started this worker. If it dies, even by SIGKILL, this
    process is handed to another parent; noticing that is how a worker never outlives serve.
    `metrics`: (host, port) to serve this process's Prometheus counters on (steps, deliveries,
    deferrals happen here, not in the API process) and its own database pool's use.
    """
    tune_gc()
    if metrics is not None:
        from prometheus_client import REGISTRY, start_http_server

        from conveyor.services.ops import PoolCollector

        REGISTRY.register(PoolCollector(conveyor.store))
        start_http_server(metrics[1], addr=metrics[0])
        log.info("worker metrics on http://%s:%d/metrics", *metrics)
    loop = BackgroundLoop(conveyor, role)
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:  # asked twice: stop now; every transaction is atomic, so a kill is safe
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        stopping = True
        log.info("%s: stopping after the current transaction", signal.Signals(signum).name)
        loop.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    loop.start()
    log.info("worker %d running: %s", os.getpid(), role)
    try:
        while not loop.wait(PARENT_CHECK_SECONDS):
            if parent is not None and os.getppid() != parent:
                log.warning("serve (pid %d) is gone; stopping", parent)
                stopping = True
                loop.request_stop()
    finally:
        loop.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("worker %d stopped", os.getpid())
