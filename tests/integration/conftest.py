"""API fixtures: the real app served by uvicorn on 127.0.0.1, a workspace and its keys."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from conveyor.api.app import create_app
from conveyor.bootstrap import Conveyor
from conveyor.domain.workspaces import Workspace


@dataclass
class Tenant:
    workspace: Workspace
    admin_key: str
    write_key: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def write(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.write_key}"}


def make_tenant(conveyor: Conveyor, name: str) -> Tenant:
    workspace, admin = conveyor.workspaces.create(name)
    write = conveyor.workspaces.create_key(workspace, "write", "website")
    return Tenant(workspace, admin.secret, write.secret)


class _Server(uvicorn.Server):
    """uvicorn's server, stopped as soon as it is told: its loop looked at `should_exit` every
    0.1 s, a wait every test with a server paid at its end (~600 of them)."""

    _wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    async def main_loop(self) -> None:
        wake = asyncio.Event()
        self._wake = (asyncio.get_running_loop(), wake)
        counter = 0
        while not await self.on_tick(counter):  # what uvicorn's loop does, every 0.1 s
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 0.1)

    def stop(self) -> None:
        self.should_exit = True
        if self._wake is not None:  # else the loop sees should_exit before it first waits
            loop, wake = self._wake
            loop.call_soon_threadsafe(wake.set)


class LiveServer:
    """uvicorn in a thread on a free loopback port: real HTTP, no test-only transport."""

    def __init__(self, app: object, **options: object) -> None:
        # IPPROTO_TCP explicitly: asyncio then sets TCP_NODELAY (else Nagle adds ~45 ms a call).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", **options
        )
        self.server = _Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def server(conveyor: Conveyor) -> Iterator[LiveServer]:
    with LiveServer(create_app(conveyor)) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture
def tenant(conveyor: Conveyor) -> Tenant:
    return make_tenant(conveyor, "acme")


@pytest.fixture
def other_tenant(conveyor: Conveyor) -> Tenant:
    return make_tenant(conveyor, "globex")
