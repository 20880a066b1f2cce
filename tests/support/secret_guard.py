"""A pytest plugin: no secret the suite creates may appear in any log line of the run.

It records secrets where Conveyor makes them (API keys, workspace secrets and the webhook, site,
inbound-URL and automation-webhook secrets derived from them, session and setup tokens,
passwords, the text of messages sent), captures every log record emitted in the test process
(formatted by Conveyor's own JSON formatter) and the log lines of the `conveyor` processes the
tests start, and fails the run naming each leak, with the secret masked. Under xdist each worker
checks its own and reports to the controller.

The checks are incremental so the suite stays fast: new lines are checked at the end of each test
against every secret (token-shaped secrets through an index, in time linear in the text) and new
secrets against a bounded ring of recent lines.
"""

from __future__ import annotations

import collections
import functools
import inspect
import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import pytest

from conveyor import logs
from conveyor.channels.base import Sms, WebhookCall
from conveyor.services import (
    automations,
    channel_config,
    delivery,
    outgoing,
    signin,
    workspaces,
)
from tests.support import cli

RING_LINES = 2_000  # recent lines kept for secrets made (or learnt) after the line was logged
LINE_LIMIT = 20_000  # characters of one line kept (a traceback can be long)
PREFIX = 16  # a token-shaped secret is found by its first 16 characters
MIN_SECRET = 10  # shorter strings (a short password) would match by chance
MIN_BODY_LINE = 24  # a line of a message shorter than this is not distinctive
_TOKEN = re.compile(rf"[A-Za-z0-9_\-]{{{PREFIX},}}")
_SUBPROCESS_KEY = re.compile(r"cvk_[A-Za-z0-9_\-]{20,}")
_SUBPROCESS_SETUP = re.compile(r"setup\?token=([A-Za-z0-9_\-]{20,})")


@dataclass(frozen=True)
class Leak:
    kind: str
    where: str  # the test running when the line was checked
    line: str  # with the secret masked


def mask(line: str, secret: str, kind: str) -> str:
    at = line.find(secret)
    start = max(0, at - 120)
    shown = line[start : at + len(secret) + 120].replace(secret, f"<{kind}: {secret[:4]}…>")
    return ("…" if start else "") + shown + ("…" if at + len(secret) + 120 < len(line) else "")


class SecretGuard:
    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self.by_prefix: dict[str, list[str]] = collections.defaultdict(list)
        self.plain: set[str] = set()  # not token-shaped: found by substring
        self.pending: list[str] = []  # secrets not yet checked against the ring
        self.new_lines: list[str] = []  # lines not yet checked against every secret
        self.ring: collections.deque[str] = collections.deque(maxlen=RING_LINES)
        self.leaks: list[Leak] = []
        self.found: set[str] = set()  # each secret is reported once, where first seen
        self.where = "session setup"
        self.lines_seen = 0
        self.seconds = 0.0  # spent checking, for the summary line
        # Servers' threads log and mint keys while the test's thread checks.
        self.lock = threading.RLock()

    # --- recording --------------------------------------------------------------------------

    def secret(self, value: Any, kind: str) -> None:
        if not isinstance(value, str):
            return
        value = value.strip()
        with self.lock:
            self._add(value, kind)

    def _add(self, value: str, kind: str) -> None:
        if len(value) < MIN_SECRET or value in self.kinds:
            return
        self.kinds[value] = kind
        if _TOKEN.fullmatch(value):
            self.by_prefix[value[:PREFIX]].append(value)
        else:
            self.plain.add(value)
        self.pending.append(value)

    def body(self, text: Any) -> None:
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        if not isinstance(text, str):
            return
        for line in text.splitlines():
            if len(line.strip()) >= MIN_BODY_LINE:
                self.secret(line, "message body")

    def line(self, text: str) -> None:
        with self.lock:
            self.lines_seen += 1
            self.new_lines.append(text[:LINE_LIMIT])

    # --- checking ---------------------------------------------------------------------------

    def check(self) -> None:
        started = time.perf_counter()
        try:
            with self.lock:
                self._check()
        finally:
            self.seconds += time.perf_counter() - started

    def stats(self) -> dict[str, float]:
        return {"lines": self.lines_seen, "secrets": len(self.kinds), "seconds": self.seconds}

    def _check(self) -> None:
        lines, self.new_lines = self.new_lines, []
        for text in lines:
            self._check_line(text, self.plain)
        self.ring.extend(lines)
        pending, self.pending = self.pending, []
        fresh = [s for s in pending if s not in self.found]
        if fresh and self.ring:
            recent = "\n".join(self.ring)
            for secret in fresh:
                if secret in recent:
                    hit = next(t for t in self.ring if secret in t)
                    self._leak(secret, hit)

    def _check_line(self, text: str, plain: Iterable[str]) -> None:
        for token in _TOKEN.findall(text):
            for i in range(len(token) - PREFIX + 1):
                for secret in self.by_prefix.get(token[i : i + PREFIX], ()):
                    if token.startswith(secret, i):
                        self._leak(secret, text)
        for secret in plain:
            if secret in text:
                self._leak(secret, text)

    def _leak(self, secret: str, text: str) -> None:
        if secret in self.found:
            return
        kind = self.kinds[secret]
        self.found.add(secret)
        self.leaks.append(Leak(kind, self.where, mask(text, secret, kind)))

    # --- subprocess output ------------------------------------------------------------------

    def subprocess_text(self, text: str, *, stderr: bool) -> None:
        """A `conveyor` process's output: keys and setup tokens it printed become secrets; its
        log lines (all of stderr; JSON log lines on stdout, which tests often merge with
        stderr) are checked. A key printed on stdout is the CLI's answer, not a log line."""
        for key in _SUBPROCESS_KEY.findall(text):
            self.secret(key, "API key")
            self.secret(key.removeprefix(workspaces.KEY_PREFIX), "API key")
        for token in _SUBPROCESS_SETUP.findall(text):
            self.secret(token, "setup token")
        for line in text.splitlines():
            if stderr or line.startswith('{"ts"'):
                self.line(line)


class _GuardHandler(logging.Handler):
    """Formats each record once (it reaches this handler from every logger it is attached to)."""

    def __init__(self, guard: SecretGuard) -> None:
        super().__init__(logging.DEBUG)
        self.guard = guard
        self.setFormatter(logs.JsonFormatter())
        self.addFilter(logs.StampRequestId())

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "_secret_guard_seen", False):
            return
        record._secret_guard_seen = True
        started = time.perf_counter()
        try:
            self.guard.line(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not a line
            self.handleError(record)
        self.guard.seconds += time.perf_counter() - started


class _TeeStream:
    """A subprocess pipe that hands what the test reads from it to the guard too."""

    def __init__(self, stream: IO[Any], guard: SecretGuard, stderr: bool) -> None:
        self._stream, self._guard, self._stderr = stream, guard, stderr

    def _seen(self, data: Any) -> Any:
        if data:
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            self._guard.subprocess_text(text, stderr=self._stderr)
        return data

    def read(self, *args: Any) -> Any:
        return self._seen(self._stream.read(*args))

    def readline(self, *args: Any) -> Any:
        return self._seen(self._stream.readline(*args))

    def readlines(self, *args: Any) -> Any:
        lines = self._stream.readlines(*args)
        for line in lines:
            self._seen(line)
        return lines

    def __iter__(self) -> Iterator[Any]:
        for line in self._stream:
            yield self._seen(line)

    def __next__(self) -> Any:
        return self._seen(next(self._stream))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __enter__(self) -> _TeeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()


def _guarded_popen(guard: SecretGuard) -> type[subprocess.Popen[Any]]:
    class GuardedPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._guard_raw = (self.stdout, self.stderr)
            self._guard_tee = False
            if not _is_conveyor(args[0] if args else kwargs.get("args")):
                return  # browsers, npm, pytest: not Conveyor's log lines
            self._guard_tee = True
            if self.stdout is not None:
                self.stdout = _TeeStream(self.stdout, guard, stderr=False)  # type: ignore[assignment]
            if self.stderr is not None:
                self.stderr = _TeeStream(self.stderr, guard, stderr=True)  # type: ignore[assignment]

        def communicate(self, *args: Any, **kwargs: Any) -> Any:
            # communicate() reads the raw pipes itself: give it the real files, then look.
            self.stdout, self.stderr = self._guard_raw
            out, err = super().communicate(*args, **kwargs)
            for data, is_err in ((out, False), (err, True)):
                if data and self._guard_tee:
                    text = data.decode(errors="replace") if isinstance(data, bytes) else data
                    guard.subprocess_text(text, stderr=is_err)
            return out, err

    return GuardedPopen


def _is_conveyor(argv: Any) -> bool:
    words = [argv] if isinstance(argv, str | bytes) else list(argv or [])
    return bool(words) and (
        str(words[0]).endswith("conveyor") or "conveyor" in (str(w) for w in words[1:3])
    )


def _after(target: Any, name: str, record: Callable[..., None]) -> Callable[[], None]:
    """Wrap `target.name` so `record(result, *args, **kwargs)` sees each call; returns undo."""
    original = getattr(target, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        record(result, *args, **kwargs)
        return result

    setattr(target, name, wrapper)
    return lambda: setattr(target, name, original)


def _hooks(guard: SecretGuard) -> list[Callable[[], None]]:
    """Wrap the places Conveyor makes secrets (one each), for the whole session."""
    put = guard.secret

    def key(new: workspaces.NewKey, *_: Any, **__: Any) -> None:
        put(new.secret, "API key")
        put(new.secret.removeprefix(workspaces.KEY_PREFIX), "API key")

    def workspace(made: tuple[Any, workspaces.NewKey], *_: Any, **__: Any) -> None:
        ws = made[0]
        put(ws.secret, "workspace secret")
        put(channel_config.webhook_secret(ws), "webhook signing secret")
        put(channel_config.site_secret(ws), "site identity secret")
        for purpose in ("sms", "email"):  # the secret path of its providers' inbound URLs
            put(channel_config.inbound_token(ws, purpose), "inbound webhook token")

    def automation(saved: tuple[automations.AutomationInfo, str], *args: Any, **kwargs: Any) -> None:
        workspace = _SAVE.bind(*args, **kwargs).arguments["workspace"]
        put(automations.hook_token(workspace, saved[0].key), "automation webhook token")

    def session(new: signin.NewSession, *_: Any, **__: Any) -> None:
        put(new.token, "session token")
        put(new.member.csrf, "CSRF token")

    def setup_token(token: str | None, *_: Any, **__: Any) -> None:
        put(token, "setup token")

    def email(parts: Any, *_: Any, **__: Any) -> None:
        guard.body(parts.text)

    def prepared(result: Any, job: outgoing.Job, *_: Any, **__: Any) -> None:
        payload = job.payload
        if isinstance(payload, Sms | WebhookCall):
            guard.body(payload.body)

    return [
        _after(workspaces.Workspaces, "_add_key", key),
        _after(workspaces.Workspaces, "create", workspace),
        _after(automations.Automations, "save", automation),
        _after(signin.SignIn, "_open", session),
        _after(signin.SignIn, "setup_link_token", setup_token),
        _after(signin.SignIn, "create_user", _password_of("create_user", put)),
        _after(signin.SignIn, "set_password", _password_of("set_password", put)),
        _after(outgoing, "email_parts", email),
        _after(delivery, "prepare", prepared),
    ]


_SAVE = inspect.signature(automations.Automations.save)


def _password_of(method: str, put: Callable[[Any, str], None]) -> Callable[..., None]:
    signature = inspect.signature(getattr(signin.SignIn, method))

    def record(_: Any, *args: Any, **kwargs: Any) -> None:
        put(signature.bind(*args, **kwargs).arguments.get("password"), "password")

    return record


class SecretGuardPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.guard = SecretGuard()
        self.handler = _GuardHandler(self.guard)
        self.undo: list[Callable[[], None]] = []
        self.worker_leaks: list[dict[str, str]] = []
        self.worker_stats: list[dict[str, float]] = []

    def start(self) -> None:
        self.undo = _hooks(self.guard)
        original_popen = subprocess.Popen
        subprocess.Popen = _guarded_popen(self.guard)  # type: ignore[misc]
        self.undo.append(lambda: setattr(subprocess, "Popen", original_popen))
        # Commands run by forking a process that has the imports (tests/support/cli.py).
        cli.observers.append(self.guard.subprocess_text)
        self.undo.append(lambda: cli.observers.remove(self.guard.subprocess_text))
        # Conveyor's loggers at DEBUG (INFO is what `serve` emits) and the root logger's level
        # left as it is: at DEBUG, SQLAlchemy would log every statement with its parameters,
        # which production never does.
        for name in ("", "conveyor", "uvicorn"):
            logging.getLogger(name).addHandler(self.handler)
        for name in ("conveyor", "uvicorn"):
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
                previous = logger.level
                logger.setLevel(logging.DEBUG)
                self.undo.append(functools.partial(logger.setLevel, previous))

    def stop(self) -> None:
        for name in ("", "conveyor", "uvicorn"):
            logging.getLogger(name).removeHandler(self.handler)
        for undo in reversed(self.undo):
            undo()

    @pytest.hookimpl
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.guard.check()  # lines logged between tests belong to the one before
        self.guard.where = nodeid

    @pytest.hookimpl
    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.guard.check()
        self.guard.where = f"after {nodeid}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        self.worker_leaks.extend(json.loads(output.get("secret_leaks", "[]")))
        if "secret_stats" in output:
            self.worker_stats.append(json.loads(output["secret_stats"]))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.guard.check()
        leaks = [vars(leak) for leak in self.guard.leaks] + self.worker_leaks
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["secret_leaks"] = json.dumps(leaks)
            workeroutput["secret_stats"] = json.dumps(self.guard.stats())
        if leaks:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        leaks = [vars(leak) for leak in self.guard.leaks] + self.worker_leaks
        stats = self.worker_stats or [self.guard.stats()]
        terminalreporter.write_line(
            "secret guard: {} log lines checked for {} secrets in {:.2f} s".format(
                *(sum(s[k] for s in stats) for k in ("lines", "secrets", "seconds"))
            )
            + (f" ({len(stats)} workers)" if self.worker_stats else "")
        )
        if not leaks:
            return
        terminalreporter.section("secrets in log lines", red=True)
        for leak in leaks:
            terminalreporter.line(f"SECRET LEAKED ({leak['kind']}) in {leak['where']}:")
            terminalreporter.line(f"    {leak['line']}")


def install(config: pytest.Config) -> None:
    """Called from the suite's `pytest_configure` (tests/conftest.py)."""
    plugin = SecretGuardPlugin(config)
    plugin.start()
    config.pluginmanager.register(plugin, "secret_guard_plugin")
    config.add_cleanup(plugin.stop)
