"""What the ingest benchmark compares Conveyor with, measured in the same run on the same bodies:

- a bare FastAPI endpoint under uvicorn (the same server options) that reads and parses each
  body with orjson and answers `{"success": true}`: what the HTTP server and JSON alone allow;
- raw inserts of the very event rows Conveyor wrote (read back from its database) into a fresh
  database with Conveyor's schema and indexes: `sqlite3.executemany`, psycopg `COPY`, with a
  commit per 1,000 rows: what the driver and the database alone allow.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
from common import BIN, SRC, free_port
from raw_writes import raw_writes
from sqlalchemy import create_engine, text

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = (
    "workspace_id, contact_id, kind, name, properties, context, message_id, timestamp, received_at"
)
CHUNK = 1_000

BARE_APP = """
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


async def parse(request: Request) -> JSONResponse:
    body = orjson.loads(await request.body())
    count = len(body["batch"]) if "batch" in body else 1
    return JSONResponse({"success": True, "accepted": count, "duplicates": 0, "errors": []})


for path in ("/v1/batch", "/v1/track", "/v1/identify", "/v1/page"):
    app.add_api_route(path, parse, methods=["POST"])
app.add_api_route("/health", lambda: {"ok": True}, methods=["GET"])
"""


@contextlib.contextmanager
def bare_server(tmp: str) -> Iterator[tuple[str, int]]:
    """The bare endpoint in its own uvicorn process (as `conveyor serve` is)."""
    with open(os.path.join(tmp, "bare_api.py"), "w") as out:
        out.write(BARE_APP)
    port = free_port()
    proc = subprocess.Popen(
        [f"{BIN}/python", "-m", "uvicorn", "bare_api:app", "--port", str(port)]
        + ["--log-level", "warning", "--no-access-log"],
        cwd=tmp,
        env={**os.environ, "PYTHONPATH": os.pathsep.join((tmp, SRC))},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the bare FastAPI server did not start")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def event_rows(url: str) -> list[tuple[Any, ...]]:
    """Every event row Conveyor wrote, in log order, as stored (JSON text, timestamps)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        columns = COLUMNS
        if engine.dialect.name == "postgresql":  # JSON as text, as a client would send it
            columns = columns.replace("properties", "properties::text").replace(
                "context,", "context::text,"
            )
        rows = [tuple(r) for r in conn.execute(text(f"SELECT {columns} FROM events ORDER BY id"))]
    engine.dispose()
    return rows


def raw_inserts(dialect: str, rows: list[tuple[Any, ...]]) -> tuple[float, float | None]:
    """Seconds to insert the event `rows` with the driver alone into a fresh database of
    Conveyor's schema, a commit per 1,000, and the CPU seconds that took on SQLite."""
    names = [name.strip() for name in COLUMNS.split(",")]
    return raw_writes(dialect, [("events", names, rows)], chunk=CHUNK)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process and its live descendants (the API processes) used so far."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    for one in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError), open(f"/proc/{one}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                for child in children.read().split():
                    out += [int(child), *_descendants(int(child))]
    return out


if __name__ == "__main__":
    sys.exit("imported by benchmarks/ingest.py")
