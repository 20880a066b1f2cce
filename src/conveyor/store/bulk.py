"""Bulk writes through the driver's own executemany, values encoded once, here.

SQLAlchemy's per-row parameter processing (type processors, JSON, datetimes) was the largest
share of the engine's CPU when a tick writes thousands of steps and events (see the README's
performance notes). These statements are built once per table and column set, and values are
encoded as SQLAlchemy would store them (the same JSON text, the same datetime format), so rows
written here and rows written through SQLAlchemy read back alike. The dialect's differences
(placeholders, JSONB casts) live here too.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Table
from sqlalchemy.exc import DBAPIError

from conveyor.store.schema import UTCDateTime

Encoder = Callable[[Any], Any]


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


@lru_cache(maxsize=4096)  # a tick stamps thousands of rows with the same few moments
def _sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
    # SQLAlchemy's SQLite DATETIME storage format (years < 1000 zero-padded too, which
    # strftime's %Y does not do), so both paths read back alike.
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def _pg_time(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
    return value


def _same(value: Any) -> Any:
    return value


@lru_cache(maxsize=256)
def _plan(
    table: Table, columns: tuple[str, ...], dialect: str, where: str | None
) -> tuple[str, tuple[Encoder, ...]]:
    encoders: list[Encoder] = []
    marks: list[str] = []
    mark = "?" if dialect == "sqlite" else "%s"
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, JSON):
            encoders.append(_json)
            marks.append(mark if dialect == "sqlite" else f"{mark}::jsonb")
        elif isinstance(kind, UTCDateTime):
            encoders.append(_sqlite_time if dialect == "sqlite" else _pg_time)
            marks.append(mark)
        else:
            encoders.append(_same)
            marks.append(mark)
    quoted = [f'"{c}"' for c in columns]
    if where is None:
        sql = f"INSERT INTO {table.name} ({', '.join(quoted)}) VALUES ({', '.join(marks)})"
    else:  # an update of every column but `where`, which is the last value of each row
        sets = ", ".join(f"{q} = {m}" for q, m in zip(quoted[:-1], marks[:-1], strict=True))
        sql = f'UPDATE {table.name} SET {sets} WHERE "{where}" = {marks[-1]}'
    return sql, tuple(encoders)


def _encoded(
    rows: Sequence[dict[str, Any]], columns: tuple[str, ...], encoders: tuple[Encoder, ...]
) -> list[tuple[Any, ...]]:
    pick = itemgetter(*columns)
    encode = [(i, e) for i, e in enumerate(encoders) if e is not _same]
    if len(columns) == 1:
        return [(encoders[0](pick(row)),) for row in rows]
    if not encode:
        return [pick(row) for row in rows]
    # One JSON text per object: rows often share one (a writer's system events share their
    # context). Keyed by id, valid while `rows` hold the objects, i.e. during this call.
    texts: dict[int, Any] = {}

    def shared_json(value: Any) -> Any:
        key = id(value)
        text = texts.get(key)
        if text is None:
            text = texts[key] = _json(value)
        return text

    encode = [(i, shared_json if e is _json else e) for i, e in encode]
    out = []
    for row in rows:
        values = list(pick(row))
        for i, encoder in encode:
            values[i] = encoder(values[i])
        out.append(tuple(values))
    return out


def driver(
    conn: Connection, sql: str, params: Any, *, many: bool = False, fetch: bool = False
) -> list[Any]:
    """Run one statement on the driver's own cursor, inside `conn`'s transaction: SQLAlchemy's
    per-statement result machinery cost ~60 µs a statement, and a group of single tracking calls
    runs ~8 of them (README, Performance). Driver errors come out as SQLAlchemy's, so callers
    (and `Database.retrying`) see what they would have seen."""
    error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    _announce(conn, cursor, sql, params, many)
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
        return cursor.fetchall() if fetch else []
    except error as exc:
        raise DBAPIError.instance(sql, None, exc, error) from exc
    finally:
        cursor.close()


def _announce(conn: Connection, cursor: Any, sql: str, params: Any, many: bool) -> None:
    """Tell SQLAlchemy's `before_cursor_execute` listeners about a statement sent past it, as its
    own execute would: statement counters and tracers (benchmarks/lead.py) see every statement.
    One attribute check when nothing listens."""
    if conn._has_events or conn.engine._has_events:
        conn.dispatch.before_cursor_execute(conn, cursor, sql, params, None, many)


def insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT many rows, in the order given (one statement per run of rows with the same keys)."""
    start = 0
    while start < len(rows):
        columns = tuple(rows[start])
        end = start + 1
        while end < len(rows) and tuple(rows[end]) == columns:
            end += 1
        sql, encoders = _plan(table, columns, conn.dialect.name, None)
        driver(conn, sql, _encoded(rows[start:end], columns, encoders), many=True)
        start = end


def update(conn: Connection, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE many rows by `key` (the table's column): each row has it and the columns to set."""
    if not rows:
        return
    columns = tuple(c for c in rows[0] if c != key) + (key,)
    sql, encoders = _plan(table, columns, conn.dialect.name, key)
    driver(conn, sql, _encoded(rows, columns, encoders), many=True)


def delete(
    conn: Connection, table: Table, columns: tuple[str, ...], keys: Sequence[tuple[Any, ...]]
) -> None:
    """DELETE the rows whose `columns` hold one of `keys` (plain values: ids, text), in one
    executemany on the driver. (One `DELETE … USING unnest(arrays)` on PostgreSQL was tried:
    psycopg builds the arrays in Python, which cost more than the statements it saved.)"""
    if not keys:
        return
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    match = " AND ".join(f'"{c}" = {mark}' for c in columns)
    driver(conn, f"DELETE FROM {table.name} WHERE {match}", list(keys), many=True)


# --- reading many rows by a text key ------------------------------------------------------------


def _sqlite_time_out(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _pg_time_out(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _json_out(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


@dataclass(frozen=True)
class _Decoding:
    """How to turn a driver's row into what SQLAlchemy would give: (column, decode) pairs, and
    the columns holding times, decoded apart (a batch of rows shares a few moments)."""

    decoders: tuple[tuple[int, Encoder], ...]
    times: tuple[int, ...]


def _decoding(kinds: Sequence[Any], dialect: Any) -> _Decoding:
    decoders: list[tuple[int, Encoder]] = []
    times: list[int] = []
    for i, kind in enumerate(kinds):
        if isinstance(kind, UTCDateTime):
            times.append(i)
        elif isinstance(kind, JSON):
            decoders.append((i, _json_out))
        else:  # what SQLAlchemy would do with the value (booleans on SQLite, …), if anything
            process = kind._cached_result_processor(dialect, None)
            if process is not None:
                decoders.append((i, process))
    return _Decoding(tuple(decoders), tuple(times))


def _decoded(
    rows: Sequence[Any], decoding: _Decoding, dialect: Any, make: type[tuple[Any, ...]] = tuple
) -> list[Any]:
    """The rows decoded, as `make` tuples; each distinct stored moment parsed once."""
    decoders, times = decoding.decoders, decoding.times
    if not decoders and not times:
        return [tuple.__new__(make, r) for r in rows]
    parse = _sqlite_time_out if dialect.name == "sqlite" else _pg_time_out
    seen: dict[Any, Any] = {None: None}
    out = []
    for r in rows:
        values = list(r)
        for i in times:
            raw = values[i]
            moment = seen.get(raw)
            if moment is None and raw is not None:
                moment = seen[raw] = parse(raw)
            values[i] = moment
        for i, decode in decoders:
            if values[i] is not None:
                values[i] = decode(values[i])
        out.append(tuple.__new__(make, values))
    return out


@lru_cache(maxsize=256)
def _reader(table: Table, columns: tuple[str, ...], dialect: Any) -> tuple[str, _Decoding]:
    decoding = _decoding([table.c[name].type for name in columns], dialect)
    return ", ".join(f'"{c}"' for c in columns), decoding


def select_in(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    key: str,
    values: Sequence[str],
    *,
    workspace_id: int,
    lock: bool = False,
) -> list[tuple[Any, ...]]:
    """The rows of `table` whose text column `key` is one of `values`, in this workspace: the
    `columns` decoded as SQLAlchemy would (JSON, aware UTC datetimes). `lock`: FOR UPDATE, in id
    order (PostgreSQL). One statement per 500 values; SQLAlchemy's expansion of an IN list was
    ~10 % of the ingest writer's CPU (README, Performance)."""
    return pipelined(conn, [Lookup(table, columns, key, values, workspace_id, lock)])[0]


@dataclass(frozen=True)
class Lookup:
    """One `select_in` to run in `pipelined`; `table` None: `key` is a statement of its own
    (`values` its parameters) whose rows are not wanted, e.g. taking advisory locks; `key`
    None: every row of the workspace."""

    table: Table | None
    columns: tuple[str, ...]
    key: str | None
    values: Any
    workspace_id: int = 0
    lock: bool = False


def pipelined(conn: Connection, lookups: Sequence[Lookup]) -> list[list[tuple[Any, ...]]]:
    """Several look-ups in one round trip to PostgreSQL (its pipeline mode: the statements are
    sent together and run one after the other, each with a snapshot taken when it starts, so a
    look-up after a lock statement sees what the lock's previous holder committed); on SQLite
    one after the other. On a busy machine each round trip waits for the server's process to be
    scheduled: the ingest writer's time on PostgreSQL went mostly to waiting on round trips
    (README, Performance). Each look-up's rows, decoded, in order."""
    dialect = conn.dialect.name
    statements: list[tuple[int, str, Any]] = []  # (look-up, sql, params)
    for n, lookup in enumerate(lookups):
        if lookup.table is None:
            assert lookup.key is not None
            statements.append((n, lookup.key, lookup.values))
            continue
        selected, _decoding = _reader(lookup.table, lookup.columns, conn.dialect)
        head = f"SELECT {selected} FROM {lookup.table.name} WHERE workspace_id = "
        if lookup.key is None:  # every row of the workspace
            mark = "?" if dialect == "sqlite" else "%s"
            statements.append((n, f"{head}{mark}", (lookup.workspace_id,)))
            continue
        for start in range(0, len(lookup.values), 500):
            chunk = list(lookup.values[start : start + 500])
            if dialect == "sqlite":
                marks = ", ".join("?" * len(chunk))
                sql = f'{head}? AND "{lookup.key}" IN ({marks})'
                params: Any = (lookup.workspace_id, *chunk)
            else:
                sql = f'{head}%s AND "{lookup.key}" = ANY(%s::text[])'
                params = (lookup.workspace_id, chunk)
                if lookup.lock:
                    sql += " ORDER BY id FOR UPDATE"
            statements.append((n, sql, params))
    if dialect != "postgresql" or len(statements) < 2:
        results = [driver(conn, sql, params, fetch=True) for _n, sql, params in statements]
    else:
        results = _pipeline(conn, [(sql, params) for _n, sql, params in statements])
    out: list[list[tuple[Any, ...]]] = [[] for _ in lookups]
    for (n, _sql, _params), rows in zip(statements, results, strict=True):
        lookup = lookups[n]
        if lookup.table is None:
            continue
        out[n] += _decoded(
            rows, _reader(lookup.table, lookup.columns, conn.dialect)[1], conn.dialect
        )
    return out


def _pipeline(conn: Connection, statements: list[tuple[str, Any]]) -> list[list[Any]]:
    raw: Any = conn.connection.dbapi_connection
    error = conn.dialect.loaded_dbapi.Error
    cursors: list[Any] = []
    try:
        with raw.pipeline():
            for sql, params in statements:
                cursor = raw.cursor()
                cursors.append(cursor)
                _announce(conn, cursor, sql, params, False)
                cursor.execute(sql, params)
        # Leaving the block synced: every result is in.
        return [cursor.fetchall() if cursor.description else [] for cursor in cursors]
    except error as exc:  # as SQLAlchemy would raise it: a deadlock is retried like any other
        raise DBAPIError.instance(statements[0][0], None, exc, error) from exc
    finally:
        for cursor in cursors:
            cursor.close()


# --- reading a Core statement through the driver ---------------------------------------------


@dataclass(frozen=True)
class _Reading:
    """A statement compiled once for a dialect: its row type and its columns' decoders."""

    statement: Any  # held, so that its id is not reused while cached
    compiled: Any
    row: type[tuple[Any, ...]]
    decoding: _Decoding
    processors: dict[str, Any]  # the compiled statement's bind processors (not IN lists')
    arrays: str | None  # the SQL with each IN list as one parameter (see `_arrays`)
    lists: dict[str, Any]  # those parameters: each one's value processor, or None


_READINGS: dict[tuple[int, str], _Reading] = {}
_IN_LIST = re.compile(r" (NOT )?IN \(__\[POSTCOMPILE_(\w+)\]\)")


def _arrays(compiled: Any, dialect: str, expanding: dict[str, Any]) -> str | None:
    """The compiled SQL with each IN list as one parameter and a constant text: on PostgreSQL
    `x IN (__[POSTCOMPILE_ids])` becomes `x = ANY(%(ids)s)` (NOT IN: `<> ALL`), an array; on
    SQLite `x IN (SELECT value FROM json_each(?))`, a JSON array. SQLAlchemy otherwise renders
    each call's list as one parameter per value: ~1.8 ms of CPU for 500 ids, and on PostgreSQL
    the driver and server ~2.4 ms more, against ~0.8 ms for the whole call with an array
    (README, Performance); a constant text also lets psycopg prepare the statement. None: a
    statement without IN lists, or with an IN list of tuples. `expanding`: the IN lists' binds
    by name."""
    text = compiled.string
    names = {m.group(2) for m in _IN_LIST.finditer(text)}
    if not names or "POSTCOMPILE_" in _IN_LIST.sub("", text):
        return None
    if any(name not in expanding or expanding[name].type._is_tuple_type for name in names):
        return None

    def one(match: re.Match[str]) -> str:
        negated, name = match.group(1), match.group(2)
        if dialect == "postgresql":
            return f" <> ALL(%({name})s)" if negated else f" = ANY(%({name})s)"
        return f" {negated or ''}IN (SELECT value FROM json_each(?))"

    return _IN_LIST.sub(one, text)


def _reading(stmt: Any, dialect: Any) -> _Reading:
    found = _READINGS.get((id(stmt), dialect.name))
    if found is not None and found.statement is stmt:
        return found
    compiled = stmt.compile(dialect=dialect)
    columns = list(stmt.selected_columns)
    names = [getattr(c, "key", None) or f"_{i}" for i, c in enumerate(columns)]
    row = namedtuple("Row", names, rename=True)  # type: ignore[misc]  # noqa: PYI024
    decoding = _decoding([c.type for c in columns], dialect)
    expanding = {b.key: b for b in compiled.binds.values() if b.expanding}
    arrays = _arrays(compiled, dialect.name, expanding)
    lists = {key: b.type._cached_bind_processor(dialect) for key, b in expanding.items()}
    processors = dict(compiled._bind_processors)
    reading = _Reading(stmt, compiled, row, decoding, processors, arrays, lists)
    if len(_READINGS) >= 512:  # statements built per call pass through; the built-once stay
        _READINGS.clear()
    _READINGS[(id(stmt), dialect.name)] = reading
    return reading


def fetch(
    conn: Connection,
    stmt: Any,
    params: dict[str, Any] | None = None,
    *,
    row: type[tuple[Any, ...]] | None = None,
) -> list[Any]:
    """The rows of a Core SELECT, run on the driver's cursor and decoded here: named tuples
    with the values SQLAlchemy would give (aware UTC datetimes, parsed JSON). SQLAlchemy's
    result machinery (a Row, a type processor call per value) was most of the engine's cost
    of reading what it loads each tick; a tick's rows share a few moments, so each distinct
    stored time is parsed once a call. Compiled once per statement object: build hot
    statements once (`functools.cache`) and pass their values as `params`. `row`: a named tuple
    type of the selected columns, in order, to build instead of the generic one."""
    dialect = conn.dialect
    reading = _reading(stmt, dialect)
    if reading.arrays is not None:
        rows = driver(conn, reading.arrays, _array_args(reading, params, dialect.name), fetch=True)
        return _decoded(rows, reading.decoding, dialect, row or reading.row)
    state = reading.compiled.construct_expanded_state(params)
    values = state.parameters
    # The state names the processors of expanded (IN) values only; those of the others (a
    # JSON path, a datetime) are the compiled statement's.
    processors = {**reading.processors, **state.processors}
    if processors:
        values = {
            k: (processors[k](v) if k in processors and v is not None else v)
            for k, v in values.items()
        }
    positional = reading.compiled.positional
    args: Any = tuple(values[n] for n in state.positiontup) if positional else values
    rows = driver(conn, state.statement, args, fetch=True)
    return _decoded(rows, reading.decoding, dialect, row or reading.row)


def _array_args(reading: _Reading, params: dict[str, Any] | None, dialect: str) -> Any:
    """The parameters of `reading.arrays`: each value processed as SQLAlchemy would, each IN
    list one value (a list for psycopg's arrays, JSON text for SQLite's json_each)."""
    compiled, processors = reading.compiled, reading.processors
    given = compiled.construct_params(params)
    values: dict[str, Any] = {}
    for key, value in given.items():
        if key in reading.lists:
            each = reading.lists[key]
            items = [each(x) for x in value] if each else list(value)
            values[key] = items if dialect == "postgresql" else _json(items)
        else:
            process = processors.get(key)
            values[key] = process(value) if process and value is not None else value
    if compiled.positional:
        return tuple(values[name] for name in compiled.positiontup)
    return values


# --- PostgreSQL: COPY -------------------------------------------------------------------------


def copy(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """PostgreSQL's COPY FROM STDIN for many rows (each with the same keys), in the order given:
    3x the rows/s of a pipelined executemany of INSERTs for the event log (README, Performance).
    Sequence-made ids follow that order, as with INSERT."""
    if not rows:
        return
    columns = tuple(rows[0])
    _sql, encoders = _plan(table, columns, "postgresql", None)
    quoted = ", ".join(f'"{c}"' for c in columns)
    sql = f"COPY {table.name} ({quoted}) FROM STDIN"
    driver: Any = conn.connection.dbapi_connection
    error = conn.dialect.loaded_dbapi.Error
    cursor = driver.cursor()
    _announce(conn, cursor, sql, rows, True)
    try:
        with cursor.copy(sql) as out:
            for row in _encoded(rows, columns, encoders):
                out.write_row(row)
    except error as exc:  # as SQLAlchemy would raise it: IntegrityError, OperationalError…
        raise DBAPIError.instance(sql, None, exc, error) from exc
    finally:
        cursor.close()


def append(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Add many rows in the order given: COPY on PostgreSQL when there are enough of them with
    the same keys (a pipelined executemany of INSERTs made the engine's step writes ~16 % of
    its wall time there), INSERT otherwise."""
    if conn.dialect.name == "postgresql" and len(rows) >= 20 and _same_keys(rows):
        copy(conn, table, rows)
    else:
        insert(conn, table, rows)


def _same_keys(rows: Sequence[dict[str, Any]]) -> bool:
    first = rows[0].keys()
    return all(row.keys() == first for row in rows)


def next_ids(conn: Connection, table: Table, count: int) -> list[int]:
    """`count` fresh ids from the sequence behind `table`.id (PostgreSQL), ascending."""
    sequence = _sequence(conn, table.name)
    rows = conn.exec_driver_sql(
        "SELECT nextval(%s) FROM generate_series(1, %s)", (sequence, count)
    ).all()
    return sorted(row[0] for row in rows)


_sequences: dict[str, str] = {}


def _sequence(conn: Connection, table: str) -> str:
    if table not in _sequences:
        _sequences[table] = conn.exec_driver_sql(
            "SELECT pg_get_serial_sequence(%s, 'id')", (table,)
        ).scalar_one()
    return _sequences[table]
