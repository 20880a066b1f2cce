"""Where commands print: the terminal, or — with `--json` anywhere on the command line — one
JSON document on standard output for scripts.

Every command prints through `Output`, so every command has `--json` without a branch of its
own: a table becomes a list of records (its headers are the keys), a line of text a string, a
document a command gives as data (`print_json(data=…)`: a plan, a simulation report) itself.
One document alone is printed as it is; one table alone as its list of records; anything else
as `{"lines": […], "tables": […], "documents": […]}` (the empty ones left out). Errors go to
standard error as `{"error": "…"}`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


class Output:
    def __init__(self, *, stderr: bool = False) -> None:
        self.console = Console(stderr=stderr, soft_wrap=True)
        self.json = False
        self.lines: list[str] = []
        self.tables: list[list[dict[str, str]]] = []
        self.documents: list[Any] = []

    def print(self, *objects: Any, **options: Any) -> None:
        if not self.json:
            self.console.print(*objects, **options)
            return
        for obj in objects:
            if isinstance(obj, Table):
                self.tables.append(records(obj))
            elif isinstance(obj, str):
                self.lines.append(Text.from_markup(obj).plain)
            elif isinstance(obj, Text):
                self.lines.append(obj.plain)
            else:
                self.lines.append(str(obj))

    def print_json(self, json_text: str | None = None, *, data: Any = None, **options: Any) -> None:
        if not self.json:
            self.console.print_json(json_text, data=data, **options)
            return
        self.documents.append(json.loads(json_text) if json_text is not None else data)

    def error(self, message: str) -> None:
        """One line on standard error: `error: …`, or `{"error": "…"}` with --json."""
        if self.json:
            sys.stderr.write(json.dumps({"error": message}) + "\n")
        else:
            ERRORS.print(f"[red]error:[/red] {message}", highlight=False)

    def flush(self) -> None:
        """With --json: the one document of everything printed."""
        if not self.json or not (self.lines or self.tables or self.documents):
            return
        if len(self.documents) == 1 and not self.lines and not self.tables:
            document: Any = self.documents[0]
        elif len(self.tables) == 1 and not self.lines and not self.documents:
            document = self.tables[0]
        else:
            document = {
                name: value
                for name, value in (
                    ("lines", self.lines),
                    ("tables", self.tables),
                    ("documents", self.documents),
                )
                if value
            }
        sys.stdout.write(json.dumps(document, default=str, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        self.lines, self.tables, self.documents = [], [], []


def records(table: Table) -> list[dict[str, str]]:
    """A rich table's rows as records keyed by its headers (markup dropped)."""
    headers = [
        Text.from_markup(str(c.header)).plain or f"column{n}" for n, c in enumerate(table.columns)
    ]
    columns = [[_plain(cell) for cell in c._cells] for c in table.columns]
    return [dict(zip(headers, row, strict=True)) for row in zip(*columns, strict=True)]


def _plain(cell: Any) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def take_json_flag(args: list[str]) -> tuple[list[str], bool]:
    """`--json` anywhere before a `--` turns JSON on for the whole command line."""
    end = args.index("--") if "--" in args else len(args)
    if "--json" not in args[:end]:
        return args, False
    return [a for n, a in enumerate(args) if not (n < end and a == "--json")], True


# The one output of the process, and its standard error.
out = Output()
ERRORS = Console(stderr=True, soft_wrap=True)
