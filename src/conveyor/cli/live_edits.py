"""`conveyor automation positions KEY` and `apply FILE --move v1:node=target`: where contacts
are inside an automation, and a new version that moves some of them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from conveyor.domain.errors import ConveyorError, InvalidInput

if TYPE_CHECKING:
    from conveyor.domain.automations.moves import Move

WorkspaceOpt = Annotated[
    str | None, typer.Option("--workspace", "-w", help="default: the default workspace")
]
MOVE = re.compile(r"^v?(\d{1,9}):([^=\s]+)=(\S+)$")
MoveOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--move",
        help="move the contacts at NODE of version N to TARGET of the new version: "
        "'v1:NODE=TARGET' (repeatable; the others stay on their version)",
    ),
]


def _cli() -> Any:
    from conveyor.cli import main  # the entrypoint's helpers (it imports this module)

    return main


def parse_moves(given: list[str]) -> list[Move]:
    from conveyor.domain.automations.moves import Move

    moves = []
    for text in given:
        found = MOVE.match(text.strip())
        if found is None:
            raise InvalidInput(f"--move {text}", "write it as v1:NODE=TARGET")
        moves.append(Move(int(found[1]), found[2], found[3]))
    return moves


def positions(key: str, workspace: WorkspaceOpt = None) -> None:
    """Where contacts are inside an automation: per version and node, and what the live
    version did to that node (removed, changed or the same)."""
    main = _cli()
    conveyor = main._open()
    try:
        version, found = conveyor.live_edits.positions(main._workspace(conveyor, workspace), key)
    except ConveyorError as exc:
        main._fail(exc.detail)
    table = Table("version", "node", "type", "contacts", "in the live version")
    for p in found:
        table.add_row(f"v{p.version}", p.node, p.type, str(p.count), p.change)
    main.out.print(f"{key}: live version {version}, {sum(p.count for p in found)} inside")
    if found:
        main.out.print(table)


def publish(conveyor: Any, ws: Any, raw: dict[str, Any], moves: list[str]) -> tuple[Any, str]:
    """`apply` with moves: the new version and the moves in one transaction."""
    plan = parse_moves(moves)
    key = raw.get("key") if isinstance(raw.get("key"), str) else ""
    live = conveyor.automations.get(ws, key)
    done = conveyor.live_edits.publish(ws, key, raw, plan, live.version, by="the command line")
    for move, n in done.moved:
        _cli().out.print(f"moved {n} from {move.label(done.version)}")
    return done.info, done.result
