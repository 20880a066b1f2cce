"""Template memory benchmark: resident memory of a process that renders many distinct large
templates, with the parsed-template cache bounded by its byte budget (today) and unbounded (as
the 1,024-entry LRU was in practice for large templates).

Each run is a fresh spawned process: RSS at start, after rendering N distinct templates of the
given size (tag-dense email HTML: an output and an if-block per ~90 characters, the densest
shape measured), and after a full collection. Issue 20's case was 20 templates of 470 KB:
163 → 472 MB, never freed.

    .venv/bin/python benchmarks/templates.py [--templates 20] [--size 470000]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import time

from rich.console import Console
from rich.table import Table

LINE = (
    "<p>Hi {{ contact.first_name | default: 'friend' }}{% if contact.score > N %}!{% endif %}</p>\n"
)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def template(seed: int, size: int) -> str:
    count = size // len(LINE) + 1
    return f"<!-- {seed} -->" + "".join(LINE.replace("N", str(i)) for i in range(count))


def run(budget: int | None, templates: int, size: int, out: multiprocessing.Queue) -> None:
    from conveyor.services import rendering

    if budget is not None:
        rendering.PARSED.budget = budget
    sources = [template(seed, size) for seed in range(templates)]
    gc.collect()
    start = rss_mb()
    began = time.perf_counter()
    context = {"contact": {"first_name": "Ann", "score": 10}}
    for source in sources:
        rendering.render(source, context, html=True)
    seconds = time.perf_counter() - began
    peak = rss_mb()
    gc.collect()
    out.put((start, peak, rss_mb(), rendering.PARSED.size / 2**20, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=20)
    parser.add_argument("--size", type=int, default=470_000)
    args = parser.parse_args()
    from conveyor.services.rendering import CACHE_BUDGET

    context = multiprocessing.get_context("spawn")
    table = Table(title=f"{args.templates} distinct templates of {args.size:,} characters")
    for header in ("cache", "RSS start MB", "after MB", "after gc MB", "cache est. MB", "s"):
        table.add_column(header, justify="left" if header == "cache" else "right")
    for label, budget in (
        (f"bounded, {CACHE_BUDGET / 2**20:.0f} MiB budget (default)", None),
        ("unbounded (as before)", 2**62),
    ):
        queue = context.Queue()
        proc = context.Process(target=run, args=(budget, args.templates, args.size, queue))
        proc.start()
        start, peak, after, cached, seconds = queue.get()
        proc.join()
        table.add_row(
            label, f"{start:.0f}", f"{peak:.0f}", f"{after:.0f}", f"{cached:.0f}", f"{seconds:.1f}"
        )
    Console(width=120).print(table)
    print(f"nproc {os.cpu_count()}; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
