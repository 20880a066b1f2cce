"""Panel contact search benchmark: the searches a marketer types, on a workspace of N contacts
(default 1,000,000), through the service the panel calls (`ContactViews.search`, 50 a page).

Contacts get an email, an external id, first and last names from small lists (so a common name
matches many), and a tag on one in ten. The database is made once per dialect and size under
/tmp and kept (`--fresh` remakes it).

    .venv/bin/python benchmarks/panel_contacts.py [--contacts 1000000] [--dialect sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, insert

from benchmarks.common import load_average, machine
from conveyor.clock import SimulatedClock
from conveyor.services.contact_views import ContactViews, Search
from conveyor.services.contacts import Contacts
from conveyor.services.workspaces import workspace_from_row
from conveyor.store import migrate
from conveyor.store.schema import contact_tags, contacts, workspaces
from conveyor.store.store import Store

FIRST = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Dennis", "Frances", "Ken", "Joan"]
LAST = ["Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Ritchie", "Allen"]
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def url_for(dialect: str, n: int) -> str:
    if dialect == "sqlite":
        return f"sqlite:////tmp/conveyor_bench_panel_{n}.sqlite"
    return f"{PG}/conveyor_bench_panel_{n}"


def build(dialect: str, n: int, fresh: bool) -> str:
    url = url_for(dialect, n)
    if dialect == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        if path.exists() and not fresh:
            return url
        path.unlink(missing_ok=True)
    else:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            exists = c.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (url.rsplit("/", 1)[1],)
            ).fetchone()
            if exists and not fresh:
                return url
            c.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {url.rsplit('/', 1)[1]}")
    engine = create_engine(url)
    migrate.upgrade(engine)
    rand = random.Random(15)
    with engine.begin() as conn:
        conn.execute(
            insert(workspaces),
            {"id": 1, "name": "bench", "secret": "s", "settings": {}, "created_at": NOW},
        )
        for start in range(1, n + 1, 20_000):
            ids = range(start, min(n, start + 19_999) + 1)
            conn.execute(
                insert(contacts),
                [
                    {
                        "id": i, "workspace_id": 1, "external_id": f"u-{i}",
                        "email": f"user{i}@example.com", "first_name": rand.choice(FIRST),
                        "last_name": rand.choice(LAST), "score": 0, "fields": {},
                        "created_at": NOW, "updated_at": NOW,
                    }
                    for i in ids
                ],
            )  # fmt: skip
            conn.execute(
                insert(contact_tags),
                [
                    {"contact_id": i, "tag": "vip", "workspace_id": 1, "created_at": NOW}
                    for i in ids
                    if i % 10 == 0
                ]
                + [
                    {"contact_id": i, "tag": "rare", "workspace_id": 1, "created_at": NOW}
                    for i in ids
                    if i % 100_000 == 7
                ],
            )
    engine.dispose()
    return url


def measure(dialect: str, url: str, runs: int) -> list[tuple[str, float, int]]:
    store = Store(url)
    views = ContactViews(store, SimulatedClock(NOW), Contacts(store, SimulatedClock(NOW)))
    with store.read() as tx:
        ws = workspace_from_row(tx.workspaces.get(1))
    deep = None
    _, cursor, _ = views.search(ws, Search())
    for _ in range(999):  # the cursor of page 1,000
        deep = cursor
        _, cursor, _ = views.search(ws, Search(), cursor)
    cases = [
        ("first page, no filter", Search(), None),
        ("page 1,000 (keyset)", Search(), deep),
        ("email start 'user4242'", Search(q="user4242"), None),
        ("email start 'user4242@'", Search(q="user4242@"), None),
        ("external id 'u-777777'", Search(q="u-777777"), None),
        ("name, common ('grace')", Search(q="grace"), None),
        ("name, nobody ('zzyzx')", Search(q="zzyzx"), None),
        ("tag 'vip' (1 in 10)", Search(tag="vip"), None),
        ("tag 'rare' (1 in 100,000)", Search(tag="rare"), None),
    ]
    out = []
    for label, search, at in cases:
        times = []
        found = 0
        for _ in range(runs):
            began = time.perf_counter()
            items, _, _ = views.search(ws, search, at)
            times.append((time.perf_counter() - began) * 1000)
            found = len(items)
        out.append((label, statistics.median(times), found))
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--dialect", default="sqlite", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    dialects = ["sqlite", "postgresql"] if args.dialect == "both" else [args.dialect]
    console = Console()
    table = Table(title=f"Panel contact search, {args.contacts:,} contacts (median of {args.runs})")
    table.add_column("search")
    for d in dialects:
        table.add_column(f"{d} ms", justify="right")
    table.add_column("shown", justify="right")
    results = {}
    for d in dialects:
        began = time.perf_counter()
        url = build(d, args.contacts, args.fresh)
        console.print(f"{d}: database ready in {time.perf_counter() - began:.0f} s")
        results[d] = measure(d, url, args.runs)
    for i, (label, _, found) in enumerate(results[dialects[0]]):
        table.add_row(label, *[f"{results[d][i][1]:.1f}" for d in dialects], str(found))
    console.print(table)
    console.print(machine())
    console.print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
