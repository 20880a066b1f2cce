"""CSV import of contacts: good rows in, bad rows reported by line, re-running changes nothing.

Files come as users have them: `,` `;` tab or `|` separated (the header line decides), with the
column names of Mailchimp, ActiveCampaign and HubSpot exports ("Email Address", "Phone Number",
"TAGS" with quoted tags, "Status"/"Email Marketing Status"), and Conveyor's own export
(`list:KEY` columns with each list's status) — so an export imports back unchanged.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.contacts import ListInfo, SubscriptionStatus, normalize_tag, parse_status
from conveyor.domain.errors import Conflict, InvalidInput
from conveyor.domain.fields import STANDARD_FIELDS
from conveyor.domain.messages import trait_key
from conveyor.domain.workspaces import Workspace
from conveyor.services.catalog import CatalogService
from conveyor.services.contact_writer import ContactWriter, Prepared
from conveyor.store.store import Store, Tx

CHUNK = 500
# After an import that wrote this many contacts, the tables it grew get fresh planner
# statistics at once (PostgreSQL; see Store.refresh_statistics), not a minute later.
ANALYZE_AFTER = 1_000
GROWN_TABLES = ("contacts", "contact_tags", "subscriptions", "events")
# A contact's longest value is 10,000 characters; a CSV field or line far past that is refused by
# line without ever being held whole (a 40 MB field answered 500 and left +320 MB resident).
FIELD_LIMIT = 65_536
LINE_LIMIT = 1_048_576
csv.field_size_limit(FIELD_LIMIT)  # process-wide; Conveyor reads CSV only here
SPECIAL_TARGETS = ("tags", "score", "status")
DELIMITERS = (",", ";", "\t", "|")
EXPORT_ONLY = ("id", "created_at", "updated_at")  # written by the export, not imported
# Column names of other tools' exports (lower case, spaces and dashes as _) → our attribute.
ALIASES = {
    "e_mail": "email", "email_address": "email", "e_mail_address": "email",
    "emailaddress": "email",
    "phone_number": "phone", "mobile": "phone", "mobile_phone": "phone",
    "mobile_number": "phone", "phonenumber": "phone", "cell_phone": "phone",
    "firstname": "first_name", "first": "first_name", "given_name": "first_name",
    "lastname": "last_name", "last": "last_name", "surname": "last_name",
    "family_name": "last_name",
    "tag": "tags", "time_zone": "timezone",
    "user_id": "external_id", "userid": "external_id",
    "email_marketing_status": "status", "subscription_status": "status",
    "member_status": "status", "marketing_status": "status",
}  # fmt: skip
# Other tools' subscription states → ours; None: no subscription to set for this row.
STATUSES: dict[str, SubscriptionStatus | None] = {
    "active": SubscriptionStatus.SUBSCRIBED, "opted_in": SubscriptionStatus.SUBSCRIBED,
    "pending": SubscriptionStatus.UNCONFIRMED, "cleaned": SubscriptionStatus.BOUNCED,
    "bounce": SubscriptionStatus.BOUNCED, "spam": SubscriptionStatus.COMPLAINED,
    "opted_out": SubscriptionStatus.UNSUBSCRIBED,
    "non_subscribed": None, "nonsubscribed": None, "transactional": None, "": None,
}  # fmt: skip


class _DryRun(Exception):
    """Rolls a dry run's chunk back after counting what it would do."""


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
    status: SubscriptionStatus | None = None  # for the --list list, when the file says
    lists: list[tuple[ListInfo, SubscriptionStatus]] = field(default_factory=list)  # list:KEY
    no_subscription: bool = False  # the file says this row is not subscribed to anything


def sniff_delimiter(header: str) -> str:
    """The separator the header line uses most, outside quotes (a lone column: `,`)."""
    outside = re.sub(r'"[^"]*"', "", header)
    counts = {d: outside.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _status(
    cell: str, line: int, field_name: str
) -> tuple[SubscriptionStatus | None, RowError | None]:
    key = re.sub(r"[\s-]+", "_", cell.strip().lower())
    if key in STATUSES:
        return STATUSES[key], None
    try:
        return SubscriptionStatus(key), None
    except ValueError:
        allowed = ", ".join(s.value for s in SubscriptionStatus)
        return None, RowError(
            line, field_name, f"'{cell[:30]}' is not a status; use one of {allowed}"
        )


def _tags(cell: str) -> list[str]:
    """Tags separated by , or ; each perhaps in quotes (Mailchimp: "VIP","Customer")."""
    return [t for t in (part.strip().strip('"').strip() for part in re.split(r"[;,]", cell)) if t]


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
        dry_run: bool = False,
    ) -> ImportReport:
        """Import; with `dry_run`, count what would change and write nothing (each chunk is
        rolled back; a contact created in one chunk and met again in another counts twice)."""
        report = ImportReport()
        list_status = parse_status(status)
        too_long: set[int] = set()
        lines = _bounded_lines(text, LINE_LIMIT, too_long)
        first = next(lines, None)
        if first is None:
            raise InvalidInput(
                "file", "the CSV file is empty; the first line must name the columns"
            )
        if too_long & {1}:
            raise InvalidInput("file", f"line 1: the header is over {LINE_LIMIT} characters")
        delimiter = sniff_delimiter(first)
        reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
        try:
            header = next(reader)
        except csv.Error as exc:
            raise InvalidInput("file", f"line 1: the header is not valid CSV: {exc}") from None
        columns = self._columns(workspace, header, mapping or {}, report)
        lists = self._list_columns(workspace, header, report)
        info: ListInfo | None = None
        if list_key is not None:
            info, report.list_created = self.catalog.ensure_list(workspace, list_key)
        elif "status" in columns.values():
            raise InvalidInput("list", "the file has a status column: name its list with --list")
        for chunk in _chunks(_rows(reader, columns, lists, report, too_long), CHUNK):
            with contextlib.suppress(_DryRun):
                self.store.transact(
                    lambda tx, c=chunk: self._chunk(
                        tx, workspace, c, info, list_status, report, dry_run=dry_run
                    )
                )
            if progress is not None:
                progress(len(chunk))
        if not dry_run and report.created + report.updated >= ANALYZE_AFTER:
            self.store.refresh_statistics(*GROWN_TABLES)
        return report

    def _list_columns(
        self, workspace: Workspace, header: list[str], report: ImportReport
    ) -> dict[int, ListInfo]:
        """`list:KEY` columns (as Conveyor's export writes them): each list's status."""
        found: dict[int, ListInfo] = {}
        known = {info.key: info for info, _counts in self.catalog.lists(workspace)}
        for index, name in enumerate(header):
            if name.strip().lower().startswith("list:"):
                key = name.strip()[5:]
                if key not in known:
                    raise InvalidInput(
                        "file", f"column '{name}': no list '{key}' in this workspace"
                    )
                found[index] = known[key]
        return found

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
                if name.strip().lower().startswith("list:") or name.strip() in EXPORT_ONLY:
                    continue  # list:KEY: see _list_columns; the export's own read-only columns
                plain = re.sub(r"[\s-]+", "_", name.strip()).lower()
                guess = ALIASES.get(plain) or (
                    plain if plain in known else trait_key(plain) if plain else None
                )
                guess = ALIASES.get(guess or "", guess)
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
        *,
        dry_run: bool = False,
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
            if info is not None and not row.no_subscription:
                wanted = row.status or status
                changed |= writer.set_subscription(state, info, wanted, confirmed=True) is not None
            for listed, listed_status in row.lists:
                changed |= (
                    writer.set_subscription(state, listed, listed_status, confirmed=True)
                    is not None
                )
            if row.score is not None:
                changed |= writer.set_score(state, row.score)
            tally["created" if created else "updated" if changed else "unchanged"] += 1
        if not dry_run:
            writer.flush()
        report.rows += len(rows)
        report.created += tally["created"]
        report.updated += tally["updated"]
        report.unchanged += tally["unchanged"]
        report.errors += errors
        report.errors.sort(key=lambda e: e.line)
        if dry_run:
            raise _DryRun  # roll back what preparing the chunk locked or read


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
    reader: Any,
    columns: dict[int, str],
    lists: dict[int, ListInfo],
    report: ImportReport,
    too_long: set[int],
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
        status: SubscriptionStatus | None = None
        no_subscription = False
        listed: list[tuple[ListInfo, SubscriptionStatus]] = []
        bad: RowError | None = None
        for index, info in lists.items():
            cell = cells[index].strip() if index < len(cells) else ""
            if cell:
                found, problem = _status(cell, start, f"list:{info.key}")
                bad = problem or bad
                if found is not None:
                    listed.append((info, found))
        for index, target in columns.items():
            cell = cells[index].strip() if index < len(cells) else ""
            if not cell:
                continue  # an empty cell leaves the value as it is
            if "\x00" in cell:
                bad = RowError(start, target, "contains a NUL character")
                continue
            if target == "tags":
                tags = _tags(cell)
            elif target == "status":
                status, problem = _status(cell, start, "status")
                bad = problem or bad
                no_subscription = status is None and problem is None
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
        yield _Row(start, values, tags, score, status, listed, no_subscription)


def _chunks(rows: Iterator[_Row], size: int) -> Iterator[list[_Row]]:
    chunk: list[_Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
