"""`conveyor` commands run as a user runs them, each in a process of its own, without paying
for Python's imports each time.

A `conveyor` command spends ~0.75 s of its ~1 s importing Python (Typer, SQLAlchemy, pydantic,
Alembic, Conveyor's services); the end-to-end tests run ~230 of them. Here one server process per
test process imports all that once (multiprocessing's "forkserver", preloaded with what the
commands import; see PRELOAD), and each command is a fork of it: a new process with its own memory,
environment, working directory, standard streams (files, as pipes would be, never a terminal) and
exit status, entering the very function the `conveyor` script calls, `conveyor.cli.main:main`.

What this skips is the script's import of Python and Conveyor from nothing. That part is still run
for real, as `conveyor` subprocesses, by the tests that are about it: `serve` (as the README
starts it) and its worker, `--version`, the lazy imports of `--help`, the API workers. The crash
tests start their workers here too (`start`): what they test is a SIGKILL at a random moment of
the work, which a forked process takes as any other.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# What the commands import (conveyor/cli/main.py imports Conveyor itself only in the commands
# that open it, so `--version` and `--help` do without) — but not conveyor.cli: its consoles read
# the environment (COLUMNS, NO_COLOR, ...) when they are made, so each command makes its own.
PRELOAD = [
    "typer",
    "rich.console",
    "rich.table",
    "rich.progress",
    "conveyor.bootstrap",
    "conveyor.settings",
    "conveyor.store.database",
    "conveyor.store.migrations",
    "alembic.command",
    "alembic.config",
    "tests.support.cli",
]

# Called with (text, stderr=...) for each command's output: the secret guard looks at it as it
# looks at a `conveyor` subprocess's pipes (tests/support/secret_guard.py).
observers: list[Callable[..., None]] = []

_context: multiprocessing.context.ForkServerContext | None = None


def _forkserver() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        _context = context
    return _context


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    input: str | None = None,  # noqa: A002 - subprocess.run's name
    cwd: str | Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`conveyor ARGS` in a new process: `subprocess.run([...], capture_output=True, text=True)`'s
    result, its streams decoded as text mode decodes them."""
    with tempfile.TemporaryDirectory(prefix="conveyor-cli-") as scratch:
        streams = [os.path.join(scratch, name) for name in ("stdin", "stdout", "stderr")]
        Path(streams[0]).write_text(input or "", encoding="utf-8")
        process = _started(args, env, str(cwd or os.getcwd()), streams)
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["conveyor", *args], timeout)
        stdout, stderr = (_text(Path(path).read_bytes()) for path in streams[1:])
    for observe in observers:
        observe(stdout, stderr=False)
        observe(stderr, stderr=True)
    return subprocess.CompletedProcess(["conveyor", *args], process.exitcode, stdout, stderr)


class Started:
    """A `conveyor` command running in the background, its output discarded: what the crash
    tests need of subprocess.Popen (send_signal, poll, wait)."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self.pid = process.pid

    def send_signal(self, signal: int) -> None:
        if self._process.exitcode is None:  # not yet reaped: the pid is still this process's
            os.kill(self.pid, signal)

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["conveyor"], timeout or 0)
        return self._process.exitcode


def start(args: Sequence[str], *, env: Mapping[str, str]) -> Started:
    """`conveyor ARGS` in a new process, left running (a worker, say)."""
    return Started(_started(args, env, os.getcwd(), [os.devnull] * 3))


def _started(
    args: Sequence[str], env: Mapping[str, str], cwd: str, streams: list[str]
) -> multiprocessing.process.BaseProcess:
    """A fork of the server running `_command`; streams: the stdin, stdout and stderr files."""
    process = _forkserver().Process(
        target=_command, args=(list(args), dict(env), cwd, *streams), name="conveyor"
    )
    process.start()
    return process


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _command(args: list[str], env: dict[str, str], cwd: str, stdin: str, stdout: str,
             stderr: str) -> None:
    """The forked process: becomes `conveyor ARGS` and exits as it would."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path, flags in (
        (0, stdin, os.O_RDONLY),
        (1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    # multiprocessing gave the child /dev/null as sys.stdin; the streams below are the fds above.
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.argv = [str(Path(sys.executable).with_name("conveyor")), *args]
    from conveyor.cli.main import main

    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = _exit_status(exit_.code)
    except BaseException:  # noqa: BLE001 - as the interpreter does for an uncaught exception
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # multiprocessing ends its children with os._exit, which skips them
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1
