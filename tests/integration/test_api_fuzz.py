"""No input may make the API answer 500: a bounded schemathesis run over every operation.

The schema comes from the live server's /openapi.json and every generated request goes over real
HTTP with an admin key of a workspace that holds a contact, fields, lists, a segment and an active
automation; about half of the cases carry the ids and keys of those rows in their path, so
handlers reach real rows instead of stopping at 404. Only `not_a_server_error` is checked: the other schemathesis checks would flag
deliberate choices (422 for values the schema does not forbid, 404 for unknown keys, ...).

Each operation gets MAX_EXAMPLES cases, positive and negative (schema-violating), derandomized
so a failure reproduces, not shrunk, and not stored: database=None keeps the example database
off (Hypothesis still caches literals under the git-ignored .hypothesis/ as it always does).
The cases are generated once and sent to both dialects' servers.

`test_inputs_that_made_server_errors` pins down, one request each, the 500s found this way.
"""

from __future__ import annotations

import base64
import logging
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.generation import GenerationMode

from conveyor.bootstrap import Conveyor
from conveyor.services.automations import hook_token
from conveyor.services.contacts import confirmation_token
from tests.support.flows import provide

if TYPE_CHECKING:
    from schemathesis.schemas import APIOperation

    from tests.integration.conftest import LiveServer, Tenant

MAX_EXAMPLES = 20
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same cases on every run and on both dialects
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failing case is reported
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.fixture
def server(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """The shared live server, adjusted for a run full of 500s.

    - Nagle off (see test_api_isolation.py): ~40 ms less a request.
    - uvicorn's own log of each 500 off. It formats the traceback *after* the response went
      out, in the server thread (with ast.parse, on CPython 3.11), while pytest may be formatting
      a report in the main thread: CPython 3.11.7 then raises "SystemError: AST constructor
      recursion depth mismatch" (python/cpython#106905) and pytest stops with INTERNALERROR.
      The API logs the cause itself before it answers; the reports use that record.
      (uvicorn configures its loggers when the server is made, so this comes after.)
    """
    server.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    monkeypatch.setattr(logging.getLogger("uvicorn.error"), "disabled", True)
    yield server


def seed(conveyor: Conveyor, client: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    """Rows for the requests to hit; returns a real value for every path parameter name."""
    # A worker is alive, so /readyz answers 200 (its 503 would count as a server error here).
    conveyor.ops.beat("fuzz:1", "all", conveyor.clock.now())
    for path, body in [
        ("/fields", {"key": "plan", "type": "text"}),
        ("/fields", {"key": "size", "type": "choice", "choices": ["s", "m", "l"]}),
        ("/fields", {"key": "seen", "type": "datetime"}),
        ("/lists", {"key": "newsletter"}),
        ("/lists", {"key": "digest", "double_opt_in": True}),
        ("/contacts", {"email": "ada@example.com", "external_id": "u-ada", "tags": ["vip"],
                       "fields": {"plan": "pro", "size": "m"},
                       "lists": {"newsletter": "subscribed", "digest": "subscribed"}}),
        ("/segments", {"key": "vips", "condition": {"tag": "vip"}}),
    ]:
        response = client.post(path, json=body, headers=tenant.admin)
        assert response.status_code == 201, response.text
    contact = client.get("/contacts/lookup", params={"email": "ada@example.com"},
                         headers=tenant.admin).json()
    provide(client, tenant.admin, AUTOMATION)  # its template, which POST /automations requires
    for method, path, body in [
        ("POST", "/automations", AUTOMATION),
        ("PATCH", "/automations/welcome", {"status": "active"}),
        ("POST", "/automations/welcome/enroll", {"contact_id": contact["id"]}),
    ]:
        response = client.request(method, path, json=body, headers=tenant.admin)
        assert response.status_code == 200, response.text
    response = client.post("/v1/track", headers=tenant.write, json={
        "userId": "u-ada", "anonymousId": "anon-ada", "event": "order_completed"})
    assert response.status_code == 200, response.text
    # The sales side: a member, a pipeline, a deal field, a deal and a task to aim at.
    member = client.post("/members", headers=tenant.admin,
                         json={"name": "Max", "email": "max@acme.example"}).json()
    for path, body in [
        ("/pipelines", {"key": "sales", "stages": [{"name": "Lead", "probability": 10},
                                                   {"name": "Won", "probability": 100}]}),
        ("/deal-fields", {"key": "source", "type": "choice", "choices": ["web", "fair"]}),
    ]:
        response = client.post(path, json=body, headers=tenant.admin)
        assert response.status_code in (200, 201), response.text
    deal = client.post("/deals", headers=tenant.admin, json={
        "title": "Big", "pipeline": "sales", "contact_id": contact["id"], "value": 10,
        "owner_id": member["id"], "fields": {"source": "web"}}).json()
    task = client.post("/tasks", headers=tenant.admin, json={
        "title": "Call", "deal_id": deal["id"], "assignee_id": member["id"]}).json()
    # A campaign (draft) and a bulk job (queued) to aim at.
    for path, body in [
        ("/templates", {"key": "news", "channel": "email",
                        "content": {"subject": "Hi {{ contact.first_name }}", "text": "News"}}),
        ("/campaigns", {"key": "news", "template": "news",
                        "audience": {"lists": ["newsletter"], "exclude": {"segments": ["vips"]}}}),
    ]:
        response = client.post(path, json=body, headers=tenant.admin)
        assert response.status_code == 200, response.text
    job = client.post("/bulk-jobs", headers=tenant.admin, json={
        "action": "tag", "audience": {"segments": ["vips"]}, "params": {"tag": "x"},
        "confirm": True}).json()
    spare = client.post("/keys", json={"kind": "write"}, headers=tenant.admin).json()
    digest = conveyor.catalog.list(tenant.workspace, "digest")[0]
    return {
        "contact_id": contact["id"],
        "tag": "vip",
        "list_key": "newsletter",
        "key_id": spare["id"],
        "workspace": tenant.workspace.name,
        "workspace_name": tenant.workspace.name,
        "token": confirmation_token(tenant.workspace, contact["id"], digest.id),
        "hook_token": hook_token(tenant.workspace, "welcome"),
        "member_id": member["id"],
        "deal_id": deal["id"],
        "task_id": task["id"],
        "job_id": job["id"],
    }


AUTOMATION = {
    "key": "welcome", "triggers": [{"list_subscribed": "newsletter"}],
    "nodes": [{"id": "hello", "type": "send_email", "template": "welcome-1"},
              {"id": "pause", "type": "wait", "for": "7 days"}],
}
# What {key} is, by the path it is in.
KEYS = {"/fields/": "plan", "/lists/": "newsletter", "/segments/": "vips", "/automations/": "welcome",
        "/hooks/": "welcome", "/pipelines/": "sales", "/campaigns/": "news"}


# Stands for a real row's id or token in a generated path, put in as each case is sent: the rows
# (and the tokens, signed with the workspace's secret) differ between the dialects' runs, while
# the cases, derandomized, are the same, and are generated once (see Fuzzer.run).
REAL = "real:"


def strategy(operation: APIOperation, real: dict[str, Any]) -> Any:
    """Positive and negative cases, free-form and with real rows in the path (placeholders for
    the names `real` has: its values are put in as each case is sent)."""
    known = {name: REAL + name for name in real}
    known["key"] = next((v for k, v in KEYS.items() if operation.path.startswith(k)), "")
    if operation.path.startswith("/hooks/"):
        known["token"] = REAL + "hook_token"
    path = {p.name: known[p.name] for p in operation.path_parameters if p.name in known}
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    options = [operation.as_strategy(generation_mode=mode) for mode in modes]
    if path:
        options += [operation.as_strategy(generation_mode=m, path_parameters=path) for m in modes]
    return st.one_of(options)


def server_exceptions(records: list[logging.LogRecord]) -> list[str]:
    """What the API logged as unhandled while the requests ran (the cause behind a 500)."""
    found = {
        f"{type(r.exc_info[1]).__name__}: {str(r.exc_info[1]).splitlines()[0][:200]}"
        for r in records
        if r.name == "conveyor.api" and r.exc_info and r.exc_info[1] is not None
    }
    return sorted(found)


# Each operation's generated cases, by its label (see Fuzzer.run).
GENERATED: dict[str, list[schemathesis.Case]] = {}


@dataclass
class Fuzzer:
    conveyor: Conveyor
    tenant: Tenant
    base_url: str
    session: requests.Session
    caplog: pytest.LogCaptureFixture
    headers: dict[str, str]
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def run(self, operation: APIOperation, real: dict[str, Any]) -> str | None:
        """Fuzz one operation; a report of its first server error, if any.

        The cases Hypothesis generates are kept by the operation's label: the other dialect's
        run (in the same process under `--dist loadfile`) sends the same ones again without
        generating them (generation was ~40 % of a run's CPU)."""
        tally = self.statuses[operation.label] = Counter()
        logged = len(self.caplog.records)
        generated = GENERATED.get(operation.label)
        made: list[schemathesis.Case] = []

        def send(case: schemathesis.Case) -> None:
            sent = case.derive(keep_auth=True)
            sent.path_parameters = {
                name: real[value.removeprefix(REAL)]
                if isinstance(value, str) and value.startswith(REAL) else value
                for name, value in case.path_parameters.items()
            }
            response = sent.call(base_url=self.base_url, session=self.session,
                                 headers=self.headers)
            tally[response.status_code] += 1
            if response.status_code >= 500:
                self.session.close()  # uvicorn drops the connection after a 500: no stale reuse
            if operation.path.startswith("/keys/"):
                self.keep_a_working_key()
            sent.validate_response(response, checks=[not_a_server_error])

        @FUZZ
        @given(case=strategy(operation, real))
        def fuzz(case: schemathesis.Case) -> None:
            made.append(case)
            send(case)

        try:
            if generated is None:
                fuzz()
                GENERATED[operation.label] = made  # all of them passed
            else:
                for case in generated:
                    send(case)
        except (FailureGroup, Exception) as exc:
            causes = server_exceptions(self.caplog.records[logged:])
            lines = str(exc).strip().splitlines()
            curl = next((line.strip() for line in lines if "curl " in line), lines[0])
            if len(curl) > 400:  # generated bodies can be huge
                curl = curl[:400] + " [...]"
            return f"{operation.label}: {causes}\n    {curl}"
        return None

    def keep_a_working_key(self) -> None:
        """DELETE /keys/{key_id} may revoke the very key the fuzzer uses: then make another."""
        check = self.session.get(f"{self.base_url}/workspace", headers=self.headers)
        if check.status_code == 401:
            key = self.conveyor.workspaces.create_key(self.tenant.workspace, "admin", "fuzz")
            self.headers = {**self.headers, "Authorization": f"Bearer {key.secret}"}


def test_no_input_makes_a_server_error(
    conveyor: Conveyor,
    server: LiveServer,
    client: httpx.Client,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = seed(conveyor, client, tenant)
    # The schema is built on its first request (~0.5 s alone; a busy 2-core machine took >10 s,
    # schemathesis's default wait, twice in one day).
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=120)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: op.method.upper() == "DELETE")  # rows go away last
    with requests.Session() as session:
        headers = dict(tenant.admin)
        fuzzer = Fuzzer(conveyor, tenant, server.url, session, caplog, headers)
        failures = [report for op in operations if (report := fuzzer.run(op, real))]

    sent = {label: sum(tally.values()) for label, tally in fuzzer.statuses.items()}
    succeeded = [label for label, tally in fuzzer.statuses.items()
                 if any(200 <= status < 300 for status in tally)]
    print(f"\nfuzzed {len(sent)} operations with {sum(sent.values())} requests; "
          f"{len(succeeded)} operations answered 2xx at least once")
    assert len(sent) == len(operations) >= 30 and all(sent.values()), sent
    assert not failures, f"{len(failures)} operations answered 500:\n\n" + "\n\n".join(failures)
    # The key and the seeded rows worked: many operations did real work, not only 4xx.
    assert len(succeeded) >= len(operations) // 2, fuzzer.statuses


def cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"c{position}".encode()).decode().rstrip("=")


# Requests that answered 500 (found by the run above and by probing around what it found).
# (label, method, path, JSON body or CSV text)
SERVER_ERRORS: list[tuple[str, str, str, Any]] = [
    # a send policy's caps or windows given as a list (found through the OpenAPI example)
    ("policy caps as a list", "PUT", "/send-policy",
     {"caps": [{"channel": "email", "max": 1, "per": "7 days"}]}),
    ("contact policy windows as a list", "PUT", "/contacts/{contact_id}/send-policy",
     {"windows": [{"from": "08:00", "to": "21:00"}]}),
    # null or blank ids in tracking calls (pydantic applies max_length to None: TypeError)
    ("null anonymousId", "POST", "/v1/track",
     {"userId": "u-ada", "event": "x", "anonymousId": None}),
    ("null messageId", "POST", "/v1/page", {"userId": "u-ada", "messageId": None}),
    ("blank userId", "POST", "/v1/identify", {"userId": " ", "anonymousId": "anon-1"}),
    ("null id in a batch", "POST", "/v1/batch",
     {"batch": [{"type": "track", "userId": "u-ada", "event": "x", "anonymousId": None}]}),
    # integers wider than their columns (SQLite: > 2**63-1; PostgreSQL: > int4 / int8)
    ("contact id > int64", "GET", "/contacts/9223372036854775808", None),
    ("contact id > int64, PATCH", "PATCH", "/contacts/99999999999999999999", {"score": 1}),
    ("key id > int32", "DELETE", "/keys/2147483648", None),
    ("key id > int64", "DELETE", "/keys/9223372036854775808", None),
    ("contacts cursor > int64", "GET", f"/contacts?cursor={cursor(2**63)}", None),
    ("events cursor > int64", "GET", f"/events?cursor={cursor(2**63)}", None),
    ("timeline contact id > int64", "GET", "/contacts/9223372036854775808/timeline", None),
    ("explain ?contact > int64", "GET", "/segments/vips/explain?contact=9223372036854775808",
     None),
    ("outbox ?contact > int64", "GET", "/outbox?contact=9223372036854775808", None),
    ("enroll contact_id > int64", "POST", "/automations/welcome/enroll",
     {"contact_id": 2**63}),
    ("diff ?version > int32", "GET", "/automations/welcome/diff?version=2147483648", None),
    ("score > int32", "PATCH", "/contacts/{contact_id}", {"score": 2**31}),
    ("score > int64", "POST", "/contacts", {"email": "big@example.com", "score": 2**63}),
    ("score delta > int32", "POST", "/contacts/{contact_id}/score", {"delta": 2**31}),
    # NUL characters (PostgreSQL text and jsonb cannot hold them)
    ("NUL in properties", "POST", "/v1/track",
     {"userId": "u-ada", "event": "x", "properties": {"note": "a\x00b"}}),
    ("NUL in userId", "POST", "/v1/identify", {"userId": "u\x00"}),
    ("NUL in a name", "POST", "/contacts", {"email": "nul@example.com", "first_name": "a\x00"}),
    ("NUL in a list name", "PATCH", "/lists/newsletter", {"name": "a\x00b"}),
    ("NUL in ?tag", "GET", "/contacts?tag=a%00b", None),
    ("NUL in ?name", "GET", "/events?name=a%00b", None),
    ("NUL in a CSV cell", "POST", "/contacts/import", "email,first_name\nn@example.com,a\x00b\n"),
    # date-times at the ends of the calendar, which overflow when moved to UTC
    ("timestamp year 1 +14:00", "POST", "/v1/track",
     {"userId": "u-ada", "event": "x", "timestamp": "0001-01-01T00:00:00+14:00"}),
    ("timestamp year 9999 -14:00", "POST", "/v1/track",
     {"userId": "u-ada", "event": "x", "timestamp": "9999-12-31T23:59:59-14:00"}),
    ("datetime field year 1", "POST", "/contacts",
     {"email": "early@example.com", "fields": {"seen": "0001-01-01T00:00:00+14:00"}}),
    ("datetime trait year 1", "POST", "/v1/identify",
     {"userId": "u-early", "traits": {"born_at": "0001-01-01T00:00:00+14:00"}}),
]


def test_inputs_that_made_server_errors(
    conveyor: Conveyor,
    server: LiveServer,
    client: httpx.Client,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each is a 422 (or a 404, 200) to be, never a 500; all are sent, then all 500s reported."""
    real = seed(conveyor, client, tenant)
    failures = []
    for label, method, path, body in SERVER_ERRORS:
        logged = len(caplog.records)
        if isinstance(body, str):
            content = {"content": body.encode(), "headers": {"Content-Type": "text/csv"}}
        else:
            content = {"json": body}
        # A 500 makes uvicorn drop the connection: a fresh one per request.
        with httpx.Client(base_url=server.url, headers=tenant.admin, timeout=30) as fresh:
            response = fresh.request(method, path.format(**real), **content)
        if response.status_code >= 500:
            failures.append(f"{label}: {method} {path} -> {response.status_code} "
                            f"{server_exceptions(caplog.records[logged:])}")
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures)
