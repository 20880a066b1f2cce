"""Seed a workspace with a month of shop history to try `conveyor automation simulate` on.

The generated shop (see history.py): contacts update carts and some order; the abandoned-cart
automation and a competing thank-you offer run live on a simulated clock, hour by hour, from
`--days` ago until now, under email caps. Delivery does not run (no provider is needed): the
outbox keeps what the automations queued.

    CONVEYOR_DATA_DIR=... python benchmarks/seed_history.py [--contacts 500] [--days 30]
        [--workspace default]
    conveyor automation simulate examples/automations/abandoned-cart.yaml --from 30d
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import history

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.domain.errors import NotFound
from conveyor.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workspace", default=None, help="default: the default workspace")
    args = parser.parse_args()
    settings = Settings()
    start = datetime.now(UTC) - timedelta(days=args.days) + timedelta(minutes=5)
    clock = SimulatedClock(start)
    conveyor = bootstrap(settings, clock=clock)
    conveyor.upgrade_schema()
    name = args.workspace or settings.default_workspace
    try:
        workspace = conveyor.workspaces.get(name)
    except NotFound:
        workspace, _ = conveyor.workspaces.create(name)
    began = time.perf_counter()
    workspace = history.setup(conveyor, workspace, args.contacts, active=True)
    calls = history.plan(args.contacts, args.days)
    history.run(conveyor, clock, workspace, calls, args.days, live=True)
    conveyor.close()
    print(
        f"seeded '{name}': {args.contacts} contacts, {sum(map(len, calls.values()))} events "
        f"over {args.days} days, automations abandoned-cart and thanks-offer active "
        f"({time.perf_counter() - began:.0f} s)"
    )


if __name__ == "__main__":
    main()
