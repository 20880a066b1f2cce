"""Operator commands: `conveyor backup` and `restore` (SQLite), and the first admin key written
to a file instead of the terminal (containers keep stdout in their logs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli.output import ERRORS, out
from conveyor.domain.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.store.backup import BackupSummary

err = ERRORS


def write_secret(path: Path, secret: str) -> None:
    """Write `secret` to `path`, readable by its owner only (0600, also if it existed)."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)


def _report(verb: str, summary: BackupSummary) -> None:
    rows = ", ".join(f"{n} {table}" for table, n in summary.rows.items())
    out.print(f"{verb} {summary.path} (schema {summary.revision}): {rows}", highlight=False)


def _bootstrap():  # type: ignore[no-untyped-def]
    """Conveyor as configured, not migrated: a backup copies the database as it is, a restore
    brings what it restored up to date."""
    from conveyor.bootstrap import bootstrap
    from conveyor.settings import Settings

    return bootstrap(Settings())


def backup(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="the new backup file")],
) -> None:
    """Back up the SQLite database to FILE while Conveyor runs (SQLite's online backup).
    For PostgreSQL use pg_dump (see the README)."""
    conveyor = _bootstrap()
    try:
        from conveyor.services.ops import Backups

        summary = Backups(conveyor.store).backup(file)
    except ConveyorError as exc:
        out.error(exc.detail)
        raise typer.Exit(1) from None
    finally:
        conveyor.close()
    _report("backed up to", summary)


def restore(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="a file `conveyor backup` made")],
    replace: Annotated[
        bool, typer.Option("--replace", help="overwrite a database that holds data")
    ] = False,
) -> None:
    """Restore the SQLite database from FILE, then bring its schema up to date. Stop serve and
    the workers first. For PostgreSQL use pg_restore (see the README)."""
    conveyor = _bootstrap()
    try:
        from conveyor.services.ops import Backups

        summary = Backups(conveyor.store).restore(file, replace=replace)
        conveyor.upgrade_schema()
    except ConveyorError as exc:
        out.error(exc.detail)
        raise typer.Exit(1) from None
    finally:
        conveyor.close()
    _report("restored from", summary)
