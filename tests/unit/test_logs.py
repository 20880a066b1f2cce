"""Log lines: JSON or readable, with the request id, and masked secrets as a last defence."""

from __future__ import annotations

import io
import json
import logging

from conveyor import logs


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("conveyor.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_line_carries_the_request_id_and_extra_fields() -> None:
    token = logs.request_id.set("req-1")
    try:
        line = json.loads(logs.JsonFormatter().format(record("sent %d", 3, workspace_id=7)))
    finally:
        logs.request_id.reset(token)
    assert line["msg"] == "sent 3" and line["level"] == "warning"
    assert line["request_id"] == "req-1" and line["workspace_id"] == 7
    assert line["logger"] == "conveyor.test" and line["ts"].endswith("Z")


def test_keys_and_url_passwords_are_masked_in_both_formats() -> None:
    leaky = record("key cvk_abcdefghijklmnop via smtp://user:hunter2@mail.example:587",
                   detail="cvk_zyxwvutsrqponm")
    for formatter in (logs.JsonFormatter(), logs.ReadableFormatter()):
        text = formatter.format(leaky)
        assert "abcdefghijklmnop" not in text and "zyxwvutsrqponm" not in text
        assert "hunter2" not in text and "smtp://user:***@mail.example" in text


def test_the_format_follows_the_stream_unless_told() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.wants_json(io.StringIO()) and not logs.wants_json(Tty())


def test_configure_routes_uvicorn_and_conveyor_lines_once(monkeypatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "json")
    stream = io.StringIO()
    try:
        logs.configure(stream)
        logs.configure(stream)  # twice (serve, then a worker in-process): still one handler
        logging.getLogger("conveyor.api").info("hello")
        logging.getLogger("uvicorn.error").warning("Uvicorn running", extra={"color_message": "\x1b"})
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["msg"] for line in lines] == ["hello", "Uvicorn running"]
        assert "color_message" not in lines[1]
    finally:
        for name in ("conveyor", "uvicorn"):
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if getattr(h, "_conveyor", False)]:
                logger.removeHandler(handler)
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
        logging.getLogger("uvicorn.access").disabled = False
