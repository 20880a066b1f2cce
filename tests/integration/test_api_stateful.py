"""No sequence of calls may make the API answer 500: schemathesis' stateful phase (issue 20).

The operation-by-operation run (test_api_fuzz.py) sends each request alone. Here schemathesis
chains them through the links it infers from the schema (a created contact's id into GET, PATCH,
DELETE /contacts/{contact_id} and its tags, a created list's key into /lists/{key}, …), so
requests reach rows made earlier in the same scenario, in orders nobody wrote down. Only
`not_a_server_error` is checked, for the reasons test_api_fuzz.py gives. Bounded and
derandomized: the same scenarios on every run and on both databases.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.checks import not_a_server_error

from conveyor.bootstrap import Conveyor
from tests.integration.test_api_fuzz import seed, server_exceptions

if TYPE_CHECKING:
    from tests.integration.conftest import LiveServer, Tenant

SCENARIOS = 40
STEPS = 8


@pytest.fixture
def server(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """As in test_api_fuzz.py: Nagle off, and uvicorn's own 500 log off (the API logs the cause)."""
    server.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    monkeypatch.setattr(logging.getLogger("uvicorn.error"), "disabled", True)
    yield server


def test_no_sequence_of_calls_makes_a_server_error(
    conveyor: Conveyor,
    server: LiveServer,
    client: httpx.Client,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed(conveyor, client, tenant)
    # The schema is built on its first request (~0.5 s alone; a busy 2-core machine took >10 s,
    # schemathesis's default wait, twice in one day).
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=120)
    statuses: Counter[int] = Counter()
    links: Counter[str] = Counter()
    session = requests.Session()
    # A 500 makes uvicorn drop the connection; a connection per request never goes stale.
    headers = {**tenant.admin, "Connection": "close"}

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": server.url, "session": session, "headers": headers}

        def after_call(self, response: Any, case: Any) -> None:
            statuses[response.status_code] += 1
            links[f"{case.operation.method.upper()} {case.operation.path}"] += 1
            if case.operation.path.startswith("/keys/"):  # it may have revoked our own key
                check = session.get(f"{server.url}/workspace", headers=headers)
                if check.status_code == 401:
                    key = conveyor.workspaces.create_key(tenant.workspace, "admin", "stateful")
                    headers["Authorization"] = f"Bearer {key.secret}"

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])

    assert Workflow.bundles, "schemathesis inferred no links between operations"
    stopped_early = False
    try:
        Workflow.run(settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.generate],  # no shrinking: the first failing sequence is reported
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        ))  # fmt: skip
    except FlakyStrategyDefinition:
        # The server keeps what earlier scenarios made (a key taken, a row gone), so replaying a
        # prefix can fill a bundle differently; Hypothesis then stops. The requests sent stand.
        stopped_early = True
    except BaseException:
        print("\nthe API logged:", server_exceptions(caplog.records))
        raise
    finally:
        session.close()
    print(f"\nstateful: {sum(statuses.values())} requests over {len(links)} operations, "
          f"statuses {dict(sorted(statuses.items()))}" + (" (stopped early)" * stopped_early))
    assert not any(status >= 500 for status in statuses), server_exceptions(caplog.records)
    assert sum(statuses.values()) >= 3 * SCENARIOS, statuses
    # Sequences reach real states (not only refusals): a successful call in most scenarios.
    assert sum(n for status, n in statuses.items() if 200 <= status < 300) >= SCENARIOS // 2, statuses
