"""CSV import of contacts: good rows in, bad rows reported by line, re-running changes nothing."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.contacts import ListInfo, normalize_tag, parse_status
from conveyor.domain.errors import Conflict, InvalidInput
from conveyor.domain.fields import STANDARD_FIELDS
from conveyor.domain.messages import trait_key
from conveyor.domain.workspaces import Workspace
from conveyor.services.catalog import CatalogService
from conveyor.services.contact_writer import ContactWriter, Prepared
from conveyor.store.store import Store, Tx

CHUNK = 500
SPECIAL_TARGETS = ("tags", "score")
# A contact's longest value is 10,000 characters; a CSV field or line far past that is refused by
# line without ever being held whole (a 40 MB field answered 500 and left +320 MB resident).
FIELD_LIMIT = 65_536
LINE_LIMIT = 1_048_576
csv.field_size_limit(FIELD_LIMIT)  # process-wide; Conveyor reads CSV only here


@dataclass
class RowError:
    line: int
    field: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "detail": self.detail}


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    list_created: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": len(self.errors),
            "errors": [e.as_dict() for e in self.errors],
            "ignored_columns": self.ignored_columns,
            "list_created": self.list_created,
        }


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """`column=field` pairs (as typed after --map) into a dict."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, target = pair.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise InvalidInput("map", f"'{pair}' is not column=field")
        mapping[column.strip()] = target.strip()
    return mapping


@dataclass
class _Row:
    line: int
    values: dict[str, Any]
    tags: list[str]
    score: int | None


class Imports:
    def __init__(self, store: Store, clock: Clock, catalog: CatalogService) -> None:
        self.store = store
        self.clock = clock
        self.catalog = catalog

    def run(
        self,
        workspace: Workspace,
        text: Iterable[str],
        *,
        mapping: dict[str, str] | None = None,
        list_key: str | None = None,
        status: str = "subscribed",
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        report = ImportReport()
        list_status = parse_status(status)
        too_long: set[int] = set()
        reader = csv.reader(_bounded_lines(text, LINE_LIMIT, too_long))
        try:
            header = next(reader)
        except StopIteration:
            raise InvalidInput(
                "file", "the CSV file is empty; the first line must name the columns"
            ) from None
        except csv.Error as exc:
            raise InvalidInput("file", f"line 1: the header is not valid CSV: {exc}") from None
        if too_long & {1}:
            raise InvalidInput("file", f"line 1: the header is over {LINE_LIMIT} characters")
        columns = self._columns(workspace, header, mapping or {}, report)
        info: ListInfo | None = None
        if list_key is not None:
            info, report.list_created = self.catalog.ensure_list(workspace, list_key)
        for chunk in _chunks(_rows(reader, columns, report, too_long), CHUNK):
            self.store.transact(
                lambda tx, c=chunk: self._chunk(tx, workspace, c, info, list_status, report)
            )
            if progress is not None:
                progress(len(chunk))
        return report

    def _columns(
        self, workspace: Workspace, header: list[str], mapping: dict[str, str], report: ImportReport
    ) -> dict[int, str]:
        """Which column feeds which contact attribute: --map first, then matching names."""
        known = (
            set(STANDARD_FIELDS)
            | set(SPECIAL_TARGETS)
            | {f.key for f in self.catalog.fields(workspace)}
        )
        missing = [col for col in mapping if col not in header]
        if missing:
            raise InvalidInput(
                "map", f"no column named {', '.join(repr(m) for m in missing)} in the file"
            )
        columns: dict[int, str] = {}
        for index, name in enumerate(header):
            target = mapping.get(name)
            if target is not None:
                if target not in known:
                    raise InvalidInput(
                        "map",
                        f"'{target}' is not a contact field; declare it first or map to one of "
                        f"{', '.join(sorted(known))}",
                    )
            else:
                plain = re.sub(r"[\s-]+", "_", name.strip()).lower()
                guess = plain if plain in known else trait_key(plain) if plain else None
                guess = {"e_mail": "email", "email_address": "email"}.get(guess or "", guess)
                if guess not in known:
                    if name.strip():
                        report.ignored_columns.append(name)
                    continue
                target = guess
            if target in columns.values():
                raise InvalidInput("map", f"two columns feed '{target}'")
            columns[index] = target
        if not {"email", "external_id"} & set(columns.values()):
            raise InvalidInput(
                "map", "no column holds email or external_id; map one with --map COLUMN=email"
            )
        return columns

    def _chunk(
        self,
        tx: Tx,
        workspace: Workspace,
        rows: list[_Row],
        info: ListInfo | None,
        status: Any,
        report: ImportReport,
    ) -> None:
        writer = ContactWriter(tx, workspace, self.clock.now(), source="import")
        # Counted on a copy: a retried transaction must not count twice.
        tally = {"created": 0, "updated": 0, "unchanged": 0}
        errors: list[RowError] = []
        prepared: list[tuple[_Row, Prepared, list[str]]] = []
        for row in rows:
            try:
                values = writer.prepare(row.values)
                tags = [normalize_tag(t) for t in row.tags]
            except InvalidInput as exc:
                errors += [RowError(row.line, e.field, e.detail) for e in exc.errors]
                continue
            if not values.standard.get("email") and not values.standard.get("external_id"):
                errors.append(
                    RowError(row.line, "email", "the row has neither an email nor an external_id")
                )
                continue
            prepared.append((row, values, tags))
        writer.preload(
            external_ids={
                v.standard["external_id"] for _, v, _ in prepared if v.standard.get("external_id")
            },
            emails={v.standard["email"] for _, v, _ in prepared if v.standard.get("email")},
            with_relations=True,
        )
        for row, values, tags in prepared:
            ext, email = values.standard.get("external_id"), values.standard.get("email")
            state = (writer.by_external_id(ext) if ext else None) or (
                writer.by_email(email) if email else None
            )
            try:
                writer.check_unique(state, values)
            except Conflict as exc:
                errors.append(RowError(row.line, exc.field or "", exc.detail))
                continue
            created = state is None
            if state is None:
                state = writer.create()
            changed = bool(writer.apply(state, values))
            changed |= bool(writer.add_tags(state, tags))
            if info is not None:
                changed |= writer.set_subscription(state, info, status, confirmed=True) is not None
            if row.score is not None:
                changed |= writer.set_score(state, row.score)
            tally["created" if created else "updated" if changed else "unchanged"] += 1
        writer.flush()
        report.rows += len(rows)
        report.created += tally["created"]
        report.updated += tally["updated"]
        report.unchanged += tally["unchanged"]
        report.errors += errors
        report.errors.sort(key=lambda e: e.line)


def _bounded_lines(text: Iterable[str], limit: int, too_long: set[int]) -> Iterator[str]:
    """The lines of `text`, read at most `limit` characters at a time from a file: a longer
    line is skipped (its number goes in `too_long`) and stands as an empty line, so the
    numbering holds. Other iterables (a list of lines) are taken as they are."""
    if not isinstance(text, io.TextIOBase):
        yield from text
        return
    number = 0
    while line := text.readline(limit):
        number += 1
        if len(line) >= limit and not line.endswith(("\n", "\r")):
            while (rest := text.readline(limit)) and not rest.endswith(("\n", "\r")):
                pass
            too_long.add(number)
            yield "\n"
            continue
        yield line


def _rows(
    reader: Any, columns: dict[int, str], report: ImportReport, too_long: set[int]
) -> Iterator[_Row]:
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field over FIELD_LIMIT: the reader goes on with the next
            start, line = line, reader.line_num + 1
            report.rows += 1
            report.errors.append(RowError(start, "file", f"not valid CSV here: {exc}"))
            continue
        start, line = line, reader.line_num + 1
        if start in too_long:
            report.rows += 1
            report.errors.append(
                RowError(start, "file", f"the line is over {LINE_LIMIT} characters")
            )
            continue
        if not any(cell.strip() for cell in cells):
            continue
        values: dict[str, Any] = {}
        tags: list[str] = []
        score: int | None = None
        bad: RowError | None = None
        for index, target in columns.items():
            cell = cells[index].strip() if index < len(cells) else ""
            if not cell:
                continue  # an empty cell leaves the value as it is
            if "\x00" in cell:
                bad = RowError(start, target, "contains a NUL character")
                continue
            if target == "tags":
                tags = [t for t in re.split(r"[;,]", cell) if t.strip()]
            elif target == "score":
                try:
                    score = int(cell)
                except ValueError:
                    bad = RowError(start, "score", f"expects a whole number, got '{cell[:30]}'")
            else:
                values[target] = cell
        if bad is not None:
            report.rows += 1
            report.errors.append(bad)
            continue
        yield _Row(start, values, tags, score)


def _chunks(rows: Iterator[_Row], size: int) -> Iterator[list[_Row]]:
    chunk: list[_Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
