"""Log lines: JSON when stderr is not a terminal (collectors read them), readable otherwise;
each line carries the request id of the request that caused it, and nothing secret.

Redaction is the last line of defence, not the first: code logs ids, never keys or bodies, and
SQL parameters are hidden from driver errors (`store/database.py`); the filter here still masks
anything shaped like an API key or a password in a URL.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
from typing import Any, TextIO

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "conveyor_request_id", default=None
)

_KEY = re.compile(r"cvk_[A-Za-z0-9_\-]{6,}")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
# LogRecord attributes that are not fields a caller added with `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", _KEY.sub("cvk_[redacted]", text))


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class StampRequestId(logging.Filter):
    """Puts the current request id on the record when it is logged (in the request's context,
    which FastAPI copies into the thread that runs a route)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, pid, msg, request_id, the `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": redact(record.getMessage()),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            line["request_id"] = rid
        for key, value in _fields(record).items():
            if key != "request_id":
                line[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


class ReadableFormatter(logging.Formatter):
    """For a terminal: `12:00:01 INFO conveyor.api[123] GET /contacts 200 4.1ms rid=…`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = {
            k: v for k, v in _fields(record).items() if k not in ("request_id",) and v is not None
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            extras["rid"] = rid
        tail = " ".join(f"{k}={v}" for k, v in extras.items())
        text = f"{stamp} {record.levelname:<7} {record.name}[{record.process}] "
        text += record.getMessage() + (f"  {tail}" if tail else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text)


def wants_json(stream: TextIO) -> bool:
    choice = os.environ.get("CONVEYOR_LOG_FORMAT", "auto").lower()
    if choice in ("json", "text"):
        return choice == "json"
    return not (hasattr(stream, "isatty") and stream.isatty())


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send Conveyor's and uvicorn's loggers to `stream` (stderr) in one format."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if wants_json(stream) else ReadableFormatter())
    handler.addFilter(StampRequestId())
    for name in ("conveyor", "uvicorn"):  # uvicorn.error propagates to uvicorn
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_conveyor", False)]:
            logger.removeHandler(old)
        handler._conveyor = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # one line per request is ours
    return handler
