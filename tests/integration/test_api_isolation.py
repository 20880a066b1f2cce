"""Workspace isolation and key kinds, route by route, over real HTTP on both dialects.

`CASES` holds one request per route of the app (a few routes have more than one), aimed at the
resources of workspace A (`tenant`). Each case is sent:

- with workspace B's admin key: A's resources are invisible (404) and nothing of A changes;
  collection routes act on B only (B may even reuse A's email, field key or message ids);
- with A's own admin key afterwards: the same request works, so B's 404 is not a typo;
- with A's write key: 403 on admin routes, accepted on tracking routes;
- without a key or with a bad one: 401 problem+json with a WWW-Authenticate header.

Variants point B's own rows at A's (B's contact with A's list, B's segment explaining A's
contact, ...): those fail in B (422/404) and the same request from A finds no such B row (404).
Public routes (health, schema, confirmation links, inbound webhooks) need no key; A's link and
webhook token presented under B's workspace name do nothing.

`test_every_route_has_an_isolation_case` fails when a route is added without a case here.

One app, server and database per dialect serve the whole module. The two workspaces are built
once per dialect over HTTP (~1-2 s of requests, engine and delivery) and their rows kept; a test
that may have changed them gets them back row for row (`Pristine.restore`, ~50 ms), and every
test compares A after its requests with A's snapshot as first built — so a restore that missed
anything fails the test, it cannot hide a change. The snapshot is every column of every row of
A's, in every table, read in one transaction (not A's API listings: 32 GETs a test, 55 % of the
file's time, which saw only what the listings show).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import Engine, Select, select, update

from conveyor.api.app import create_app
from conveyor.bootstrap import Conveyor, bootstrap
from conveyor.clock import SimulatedClock
from conveyor.domain import tracking
from conveyor.services.automations import hook_token
from conveyor.services.channel_config import inbound_token
from conveyor.services.contacts import confirmation_token
from conveyor.settings import Settings
from conveyor.store.database import make_engine
from conveyor.store.schema import metadata, workspaces
from tests.conftest import empty_database
from tests.integration.conftest import LiveServer, Tenant, make_tenant
from tests.support.smtp import SmtpSink

try:
    from fastapi.routing import iter_route_contexts
except ImportError:  # FastAPI without lazily included routers: app.routes is flat already

    def iter_route_contexts(routes):  # type: ignore[no-redef]
        return iter(routes)

ADMIN, TRACKING, PUBLIC = "admin", "tracking", "public"
SITE = "site"  # read by the website's snippet with the write key (no Segment call body)

# Workspace A's data; workspace B has none of these keys, so addressing them is addressing A.
EMAIL, EXTERNAL_ID, ANONYMOUS_ID = "ada@example.com", "u-ada", "anon-ada"
TAG, FIELD, LIST, DOI_LIST, SEGMENT = "vip", "plan", "newsletter", "digest", "vips"
AUTOMATION = {
    "key": "welcome", "name": "Welcome", "triggers": [{"list_subscribed": LIST}],
    "entry": {"repeat": "every_time"},
    "nodes": [{"id": "hello", "type": "send_email", "template": "welcome-1"},
              {"id": "pause", "type": "wait", "for": "7 days"}],
}
USES_SEGMENT = {  # refers to A's segment, which B does not have
    "key": "branchy", "triggers": [{"tag_added": TAG}],
    "nodes": [{"id": "check", "type": "if", "condition": {"segment": SEGMENT}, "then": "done",
               "else": "done"}, {"id": "done", "type": "end"}],
}
TRACKING_CALLS: dict[str, dict[str, Any]] = {
    "identify": {"userId": EXTERNAL_ID, "anonymousId": ANONYMOUS_ID,
                 "traits": {"email": EMAIL, "firstName": "Mallory"}},
    "track": {"userId": EXTERNAL_ID, "event": "order_completed", "properties": {"total": 1}},
    "page": {"anonymousId": ANONYMOUS_ID, "name": "Home"},
    "screen": {"userId": EXTERNAL_ID, "name": "Home"},
    "group": {"userId": EXTERNAL_ID, "groupId": "acme-inc"},
    "alias": {"previousId": ANONYMOUS_ID, "userId": EXTERNAL_ID},
}


def tracking_body(route: str, message_id: str) -> dict[str, Any]:
    """A call about A's contact; `message_id` is one A has already used (see `world`)."""
    if route == "batch":
        return {"batch": [{"type": "track", "userId": EXTERNAL_ID, "event": "batched",
                           "messageId": message_id}]}
    return {**TRACKING_CALLS[route], "messageId": message_id}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    access: str
    cross: int  # status for workspace B's admin key
    own: int  # status for workspace A's admin key (sent after, as a control)
    body: Any = None
    params: dict[str, str] | None = None
    csv: str | None = None
    cross_json: dict[str, Any] | None = None  # subset of B's response body
    own_json: dict[str, Any] | None = None
    values: dict[str, str] | None = None  # other values for {placeholders}, e.g. B's contact
    form: dict[str, str] | None = None  # sent form-encoded (providers' webhooks)
    variant: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}{' ' + self.variant if self.variant else ''}"


def _tracking(route: str) -> Case:
    return Case(
        "POST", f"/v1/{route}", TRACKING, 200, 200, body=tracking_body(route, f"a-{route}"),
        # B has never seen A's message ids: they are not duplicates there, and A's are.
        cross_json={"accepted": 1, "duplicates": 0}, own_json={"accepted": 0, "duplicates": 1},
    )


def _short(route: str, prefix: str) -> Case:
    """analytics.js's paths: the call type's first letter, with and without /v1."""
    case = _tracking(route)
    return Case(case.method, f"{prefix}/{route[0]}", TRACKING, 200, 200, body=case.body,
                cross_json=case.cross_json, own_json=case.own_json)


CONTACT, SEGMENTS, AUTOMATIONS = "/contacts/{contact_id}", "/segments/{key}", "/automations/{key}"
MESSAGE, TEMPLATES = "/messages/{message_id}", "/templates/{key}"
INBOUND = "/inbound/{workspace_name}/{token}"
TEMPLATE = {"channel": "email", "content": {
    "subject": "Welcome {{ contact.first_name }}",
    "html": '<p>Hi! <a href="https://shop.example/start">Start here</a></p>'}}
B_CONTACT = {"contact_id": "{b_contact_id}"}
MEMBER, DEAL, TASK = "/members/{member_id}", "/deals/{deal_id}", "/tasks/{task_id}"
PIPELINE = {"key": "sales", "stages": [{"name": "Lead", "probability": 10},
                                       {"name": "Qualified", "probability": 30}]}
SCORING = {"scores": {"engagement": {"decay": {"half_life": "30 days"}, "rules": [
    {"id": "orders", "event": "order_completed", "points": 5}]}}}
SCORING_A_FIELD = {"scores": {"fit": {"rules": [  # A's field, which B does not have
    {"id": "pro", "when": {"field": FIELD, "op": "eq", "value": "pro"}, "points": 10}]}}}
CAMPAIGN = "/campaigns/{key}"
A_AUDIENCE = {"lists": [LIST], "exclude": {"segments": [SEGMENT]}}  # A's, unknown to B
CAMPAIGN_CASES = [
    Case("GET", "/campaigns", ADMIN, 200, 200),
    Case("POST", "/campaigns", ADMIN, 422, 200,
         body={"key": "news", "template": "welcome-1", "audience": A_AUDIENCE}),
    Case("POST", "/campaigns/count", ADMIN, 422, 200, body={"audience": A_AUDIENCE}),
    Case("GET", CAMPAIGN, ADMIN, 404, 200),
    Case("GET", CAMPAIGN + "/count", ADMIN, 404, 200),
    Case("POST", CAMPAIGN + "/preview", ADMIN, 404, 200, body={"contact_id": "{contact_id}"}),
    Case("POST", CAMPAIGN + "/preview", ADMIN, 404, 404, body=B_CONTACT, values=B_CONTACT,
         variant="A's campaign, B's contact"),
    Case("POST", CAMPAIGN + "/schedule", ADMIN, 404, 200, body={}),
    Case("POST", CAMPAIGN + "/send", ADMIN, 404, 200),
    Case("POST", CAMPAIGN + "/unschedule", ADMIN, 404, 409),
    Case("POST", CAMPAIGN + "/pause", ADMIN, 404, 409),
    Case("POST", CAMPAIGN + "/resume", ADMIN, 404, 409),
    Case("POST", CAMPAIGN + "/cancel", ADMIN, 404, 200),
    Case("GET", CAMPAIGN + "/report", ADMIN, 404, 200),
    Case("GET", "/bulk-jobs", ADMIN, 200, 200),
    Case("POST", "/bulk-jobs/preview", ADMIN, 422, 200,
         body={"action": "tag", "audience": A_AUDIENCE, "params": {"tag": "x"}}),
    Case("POST", "/bulk-jobs", ADMIN, 422, 201,
         body={"action": "subscribe", "audience": {"tags": [TAG]}, "params": {"list": LIST},
               "confirm": True}),
    Case("GET", "/bulk-jobs/{job_id}", ADMIN, 404, 200),
    Case("POST", "/bulk-jobs/{job_id}/cancel", ADMIN, 404, 200),
]
CASES = [
    *CAMPAIGN_CASES,
    *(_tracking(route) for route in [*TRACKING_CALLS, "batch"]),
    *(_short(route, prefix) for route in [*TRACKING_CALLS, "batch"] for prefix in ("/v1", "")),
    # Creating in B what exists in A is no conflict: uniqueness is per workspace.
    Case("POST", "/contacts", ADMIN, 201, 409, body={"email": EMAIL, "external_id": EXTERNAL_ID}),
    Case("GET", "/contacts", ADMIN, 200, 200, params={"email": EMAIL}),
    Case("GET", "/contacts/lookup", ADMIN, 404, 200, params={"email": EMAIL}, variant="email"),
    Case("GET", "/contacts/lookup", ADMIN, 404, 200, params={"external_id": EXTERNAL_ID},
         variant="external_id"),
    Case("GET", "/contacts/lookup", ADMIN, 404, 200, params={"anonymous_id": ANONYMOUS_ID},
         variant="anonymous_id"),
    Case("POST", "/contacts/import", ADMIN, 200, 200, csv=f"email,external_id\n{EMAIL},{EXTERNAL_ID}\n",
         cross_json={"created": 1, "failed": 0}, own_json={"created": 0, "failed": 0}),
    Case("GET", CONTACT, ADMIN, 404, 200),
    Case("PATCH", CONTACT, ADMIN, 404, 200, body={"first_name": "Mallory", "add_tags": ["x"]}),
    Case("DELETE", CONTACT, ADMIN, 404, 204),
    Case("POST", CONTACT + "/tags", ADMIN, 404, 200, body={"tags": ["hacked"]}),
    Case("DELETE", CONTACT + "/tags/{tag}", ADMIN, 404, 200),
    Case("PUT", CONTACT + "/lists/{list_key}", ADMIN, 404, 200, body={"status": "unsubscribed"}),
    Case("POST", CONTACT + "/score", ADMIN, 404, 200, body={"delta": 100}),
    Case("GET", CONTACT + "/events", ADMIN, 404, 200),
    # The other way round: B's contact is B's, and A's list and field are no use to it.
    Case("GET", CONTACT, ADMIN, 200, 404, values=B_CONTACT, variant="B's contact"),
    Case("PUT", CONTACT + "/lists/{list_key}", ADMIN, 422, 404, body={"status": "subscribed"},
         values=B_CONTACT, variant="B's contact, A's list"),
    Case("PATCH", CONTACT, ADMIN, 422, 404, body={"fields": {FIELD: "pro"}}, values=B_CONTACT,
         variant="B's contact, A's field"),
    Case("GET", "/fields", ADMIN, 200, 200),
    Case("POST", "/fields", ADMIN, 201, 409, body={"key": FIELD, "type": "number"}),
    Case("GET", "/fields/{key}", ADMIN, 404, 200),
    Case("PATCH", "/fields/{key}", ADMIN, 404, 200, body={"label": "Hacked"}),
    Case("DELETE", "/fields/{key}", ADMIN, 404, 204),
    Case("GET", "/lists", ADMIN, 200, 200),
    Case("POST", "/lists", ADMIN, 201, 409, body={"key": LIST}),
    Case("GET", "/lists/{key}", ADMIN, 404, 200),
    Case("PATCH", "/lists/{key}", ADMIN, 404, 200, body={"name": "Hacked", "double_opt_in": True}),
    Case("DELETE", "/lists/{key}", ADMIN, 404, 204),
    Case("GET", "/segments", ADMIN, 200, 200),
    Case("POST", "/segments", ADMIN, 201, 409, body={"key": SEGMENT, "condition": {"tag": TAG}}),
    # Audiences are counted in the caller's workspace only: B has no contact tagged vip.
    Case("POST", "/segments/count", ADMIN, 200, 200, body={"condition": {"tag": TAG}},
         cross_json={"count": 0}, own_json={"count": 1}),
    Case("POST", "/segments/count", ADMIN, 422, 200, body={"condition": {"segment": SEGMENT}},
         variant="A's segment"),
    Case("GET", SEGMENTS, ADMIN, 404, 200),
    Case("PATCH", SEGMENTS, ADMIN, 404, 200, body={"name": "Hacked", "condition": {"tag": "x"}}),
    Case("DELETE", SEGMENTS, ADMIN, 404, 204),
    Case("GET", SEGMENTS + "/count", ADMIN, 404, 200),
    Case("GET", SEGMENTS + "/members", ADMIN, 404, 200),
    Case("GET", SEGMENTS + "/export", ADMIN, 404, 200),
    Case("GET", "/contacts/export", ADMIN, 200, 200),  # each its own: see the listings test
    Case("GET", SEGMENTS + "/explain", ADMIN, 404, 200, params={"contact": "{contact_id}"}),
    Case("GET", SEGMENTS + "/explain", ADMIN, 404, 404, params={"contact": "{contact_id}"},
         values={"key": "b-seg"}, variant="B's segment, A's contact"),
    Case("POST", "/segments/count", ADMIN, 422, 200,
         body={"condition": {"score": "engagement", "op": "gte", "value": 1}},
         variant="A's score"),
    # Scoring: B has no model; B's model is B's, and cannot use A's field.
    Case("GET", "/scoring-model", ADMIN, 404, 200),
    Case("PUT", "/scoring-model", ADMIN, 200, 200, body=SCORING,
         cross_json={"version": 1, "contacts": 0}, own_json={"version": 2, "contacts": 1}),
    Case("PUT", "/scoring-model", ADMIN, 422, 200, body=SCORING_A_FIELD, variant="A's field"),
    Case("POST", "/scoring-model/validate", ADMIN, 200, 200, body=SCORING),
    Case("GET", CONTACT + "/scores", ADMIN, 404, 200),
    Case("GET", "/automations", ADMIN, 200, 200),
    Case("POST", "/automations", ADMIN, 422, 200, body=AUTOMATION, variant="A's template",
         own_json={"result": "unchanged"}),
    Case("POST", "/automations", ADMIN, 422, 200, body=USES_SEGMENT, variant="A's segment"),
    Case("POST", "/automations/validate", ADMIN, 422, 200, body=AUTOMATION,
         variant="A's template"),
    Case("POST", "/automations/simulate", ADMIN, 200, 200, body={"definition": AUTOMATION}),
    Case("POST", "/automations/simulate", ADMIN, 422, 200, body={"definition": USES_SEGMENT},
         variant="A's segment"),
    Case("POST", "/automations/forecast", ADMIN, 200, 200, body={"definition": AUTOMATION}),
    Case("POST", CONTACT + "/simulate", ADMIN, 404, 200, body={"definition": AUTOMATION}),
    Case("POST", "/automations/try", ADMIN, 200, 200,
         body={"definition": AUTOMATION, "contact": {"email": EMAIL}}),
    Case("POST", "/automations/try", ADMIN, 422, 200,
         body={"definition": AUTOMATION, "contact": {"lists": {LIST: "subscribed"}}},
         variant="A's list"),
    Case("POST", "/automations/validate", ADMIN, 422, 200, body=USES_SEGMENT,
         variant="A's segment"),
    Case("GET", AUTOMATIONS, ADMIN, 404, 200),
    Case("PATCH", AUTOMATIONS, ADMIN, 404, 200, body={"status": "paused"}),
    Case("GET", AUTOMATIONS + "/diff", ADMIN, 404, 200),
    Case("GET", AUTOMATIONS + "/stats", ADMIN, 404, 200),
    Case("GET", AUTOMATIONS + "/experiments", ADMIN, 404, 200),
    Case("POST", AUTOMATIONS + "/experiments/check", ADMIN, 404, 200),
    Case("GET", "/reports" + AUTOMATIONS, ADMIN, 404, 200),
    Case("GET", "/reports" + TEMPLATES, ADMIN, 404, 200),
    Case("GET", "/reports/overview", ADMIN, 200, 200, params={"format": "csv"}),
    Case("GET", AUTOMATIONS + "/webhook", ADMIN, 404, 200),
    Case("POST", AUTOMATIONS + "/enroll", ADMIN, 404, 200, body={"contact_id": "{contact_id}"}),
    Case("POST", AUTOMATIONS + "/enroll", ADMIN, 404, 404, body={"contact_id": "{contact_id}"},
         values={"key": "b-auto"}, variant="B's automation, A's contact"),
    Case("GET", AUTOMATIONS + "/positions", ADMIN, 404, 200),
    Case("POST", AUTOMATIONS + "/publish", ADMIN, 404, 200,
         body={"definition": AUTOMATION, "moves": [], "base_version": 1}),
    Case("GET", CONTACT + "/timeline", ADMIN, 404, 200),
    Case("GET", "/outbox", ADMIN, 200, 200),
    Case("GET", "/outbox", ADMIN, 200, 200, params={"contact": "{contact_id}"},
         cross_json={"items": []}, variant="A's contact"),
    Case("GET", "/messages", ADMIN, 200, 200, params={"contact": "{contact_id}"},
         cross_json={"items": []}),
    Case("GET", MESSAGE, ADMIN, 404, 200),
    Case("POST", MESSAGE + "/retry", ADMIN, 404, 409),  # A's was sent: nothing to retry
    Case("GET", "/templates", ADMIN, 200, 200),
    Case("POST", "/templates", ADMIN, 200, 200, body={"key": "welcome-1", **TEMPLATE},
         cross_json={"result": "created"}, own_json={"result": "unchanged"}),
    Case("PUT", TEMPLATES, ADMIN, 200, 200, body=TEMPLATE, cross_json={"result": "created"},
         own_json={"result": "unchanged"}),
    Case("GET", TEMPLATES, ADMIN, 404, 200),
    Case("GET", TEMPLATES + "/versions", ADMIN, 404, 200),
    Case("DELETE", TEMPLATES, ADMIN, 404, 409),  # A's automation uses it
    Case("POST", TEMPLATES + "/preview", ADMIN, 404, 200, body={"contact_id": "{contact_id}"}),
    Case("POST", TEMPLATES + "/preview", ADMIN, 404, 404, body={"contact_id": "{contact_id}"},
         values={"key": "b-tpl"}, variant="B's template, A's contact"),
    Case("GET", "/send-policy", ADMIN, 200, 200),
    Case("PUT", "/send-policy", ADMIN, 200, 200, body={"caps": {"email": [{"max": 1, "per": "1 day"}]}}),
    Case("GET", CONTACT + "/send-policy", ADMIN, 404, 200),
    Case("PUT", CONTACT + "/send-policy", ADMIN, 404, 200,
         body={"caps": {"email": [{"max": 1, "per": "7 days"}]}}),
    Case("GET", "/channels", ADMIN, 200, 200),
    Case("PUT", "/channels/{channel}", ADMIN, 200, 200, body={"from": "news@example.com"}),
    Case("GET", "/deliverability", ADMIN, 200, 200),
    Case("PUT", "/deliverability/rules", ADMIN, 200, 200, body={"min_volume": 10}),
    Case("POST", "/deliverability/check", ADMIN, 200, 200),
    Case("POST", "/deliverability/{provider}/resume", ADMIN, 200, 200),
    Case("GET", "/suppressions", ADMIN, 200, 200, cross_json=None),
    Case("POST", "/suppressions", ADMIN, 201, 201, body={"channel": "email", "address": EMAIL}),
    Case("DELETE", "/suppressions/{channel}/{address}", ADMIN, 404, 204),
    Case("POST", "/email-events", ADMIN, 200, 200,
         body={"events": [{"type": "delivered", "email": EMAIL}]},
         cross_json={"results": ["unknown recipient"]}, own_json={"results": ["delivered"]}),
    Case("GET", "/workspace", ADMIN, 200, 200, cross_json={"name": "{b_workspace}"},
         own_json={"name": "{workspace}"}),
    Case("PATCH", "/workspace/settings", ADMIN, 200, 200, body={"default_country": "pl"}),
    # A folder naming A's list: planned or applied for B, it is B's own list.
    Case("POST", "/workspace/plan", ADMIN, 200, 200,
         body={"resources": [{"kind": "list", "key": LIST, "definition": {"key": LIST}}]},
         cross_json={"counts": {"create": 1, "update": 0, "delete": 0, "unchanged": 0,
                                "error": 0}}),
    Case("POST", "/workspace/apply", ADMIN, 200, 200,
         body={"resources": [{"kind": "list", "key": LIST, "definition": {"key": LIST}}]}),
    Case("GET", "/keys", ADMIN, 200, 200),
    Case("POST", "/keys", ADMIN, 201, 201, body={"kind": "admin", "name": "intruder"}),
    Case("DELETE", "/keys/{key_id}", ADMIN, 404, 204),
    Case("GET", "/events", ADMIN, 200, 200, params={"name": "order_completed"}),
    # The sales side: A's member, pipeline, deal and task are not B's to see or use.
    Case("GET", "/members", ADMIN, 200, 200),
    Case("POST", "/members", ADMIN, 201, 409, body={"name": "Max", "email": "max@example.com"}),
    Case("GET", MEMBER, ADMIN, 404, 200),
    Case("PATCH", MEMBER, ADMIN, 404, 200, body={"name": "Hacked"}),
    Case("DELETE", MEMBER, ADMIN, 404, 204),
    Case("GET", CONTACT + "/owner", ADMIN, 404, 200),
    Case("PUT", CONTACT + "/owner", ADMIN, 404, 200, body={"member": "{member_id}"}),
    Case("PUT", CONTACT + "/owner", ADMIN, 422, 404, body={"member": "{member_id}"},
         values=B_CONTACT, variant="B's contact, A's member"),
    Case("GET", "/pipelines", ADMIN, 200, 200),
    Case("POST", "/pipelines", ADMIN, 200, 200, body=PIPELINE, cross_json={"result": "created"},
         own_json={"result": "unchanged"}),
    Case("GET", "/pipelines/{key}", ADMIN, 404, 200),
    Case("PUT", "/pipelines/{key}", ADMIN, 200, 200, body={"stages": PIPELINE["stages"]},
         cross_json={"result": "created"}, own_json={"result": "unchanged"}),
    Case("DELETE", "/pipelines/{key}", ADMIN, 404, 409),  # A's has a deal
    Case("GET", "/pipelines/{key}/board", ADMIN, 404, 200),
    Case("GET", "/forecast", ADMIN, 200, 200),
    Case("GET", "/forecast", ADMIN, 404, 200, params={"pipeline": "sales"}, variant="A's pipeline"),
    Case("GET", "/deal-fields", ADMIN, 200, 200),
    Case("POST", "/deal-fields", ADMIN, 201, 409, body={"key": "source", "type": "text"}),
    Case("GET", "/deals", ADMIN, 200, 200, params={"contact": "{contact_id}"}),
    Case("POST", "/deals", ADMIN, 422, 201,
         body={"title": "T", "pipeline": "sales", "contact_id": "{contact_id}"}),
    Case("POST", "/deals", ADMIN, 422, 422, body={"title": "T", "pipeline": "b-pipe",
         "contact_id": "{b_contact_id}", "owner_id": "{member_id}"}, variant="A's member"),
    Case("GET", DEAL, ADMIN, 404, 200),
    Case("PATCH", DEAL, ADMIN, 404, 200, body={"stage": "Qualified", "value": 5}),
    Case("DELETE", DEAL, ADMIN, 404, 204),
    Case("POST", DEAL + "/notes", ADMIN, 404, 201, body={"body": "hacked"}),
    Case("GET", "/tasks", ADMIN, 200, 200),
    Case("POST", "/tasks", ADMIN, 422, 201, body={"title": "x", "contact_id": "{contact_id}"}),
    Case("POST", "/tasks", ADMIN, 422, 201, body={"title": "x", "deal_id": "{deal_id}"},
         variant="A's deal"),
    Case("GET", TASK, ADMIN, 404, 200),
    Case("PATCH", TASK, ADMIN, 404, 200, body={"done": True}),
    Case("DELETE", TASK, ADMIN, 404, 204),
    Case("GET", "/health", PUBLIC, 200, 200),
    Case("GET", "/healthz", PUBLIC, 200, 200),
    Case("GET", "/readyz", PUBLIC, 503, 503),  # no worker has beaten in this test
    Case("GET", "/metrics", PUBLIC, 200, 200),
    Case("GET", "/schemas/condition.json", PUBLIC, 200, 200),
    Case("GET", "/schemas/automation.json", PUBLIC, 200, 200),
    # A's confirmation link and webhook URL, presented under B's name, do nothing.
    Case("GET", "/confirm/{workspace}/{token}", PUBLIC, 404, 200),
    Case("POST", "/hooks/{workspace_name}/{key}/{token}", PUBLIC, 404, 202,
         body={"email": EMAIL, "plan": "gold"}),
    # A's message's links, signed with B's secret when B presents them, lead nowhere.
    Case("GET", "/t/o/{token}", PUBLIC, 404, 200),
    Case("GET", "/t/c/{token}", PUBLIC, 404, 302),
    Case("GET", "/u/{token}", PUBLIC, 404, 200),
    Case("POST", "/u/{token}", PUBLIC, 404, 200, form={"List-Unsubscribe": "One-Click"}),
    # A's inbound URLs under B's name do nothing.
    Case("POST", INBOUND + "/sms", PUBLIC, 404, 200,
         form={"From": "+48600100200", "To": "+15005550006", "Body": "hi", "MessageSid": "SM1"}),
    Case("POST", INBOUND + "/sms-status", PUBLIC, 404, 204,
         form={"MessageSid": "SM1", "MessageStatus": "delivered"}),
    Case("POST", INBOUND + "/email-events", PUBLIC, 404, 200,
         body=[{"event": "delivered", "email": EMAIL}]),
    Case("GET", "/sdk/conveyor.js", PUBLIC, 200, 200),
    # The API reference, served from the package (offline): the same for everyone.
    Case("GET", "/docs", PUBLIC, 200, 200),
    Case("GET", "/docs/oauth2-redirect", PUBLIC, 200, 200),
    Case("GET", "/redoc", PUBLIC, 200, 200),
    # analytics.js's own error counters: no key, nothing stored.
    Case("POST", "/v1/m", PUBLIC, 200, 200, body={"series": []}),
    Case("POST", "/m", PUBLIC, 200, 200, body={"series": []}),
    # analytics.js's settings: the key in the path is the presenter's own write key.
    Case("GET", "/v1/projects/{write_key}/settings", PUBLIC, 200, 200),
    # The website's snippet, with a write key: B's key sees no message of A's visitor.
    Case("GET", "/v1/site-messages", SITE, 200, 200, params={"userId": EXTERNAL_ID},
         cross_json={"items": []}),
    Case("POST", "/v1/site-messages/{message_id}/{event}", SITE, 404, 404,
         body={"userId": EXTERNAL_ID}),  # A's message is an email, not a site message
]
BY_ACCESS = {
    kind: [c for c in CASES if c.access == kind] for kind in (ADMIN, TRACKING, PUBLIC, SITE)
}


@dataclass
class World:
    a: Tenant
    b: Tenant
    contact_id: int  # A's contact
    b_contact_id: int  # B's contact
    key_id: int  # A's spare write key
    revoked_key: str  # a key of A's that was revoked
    token: str  # A's double opt-in confirmation token for the contact
    message_id: int  # A's email, sent, with one tracked link
    member_id: int  # A's member, owner of A's contact and deal
    deal_id: int  # A's deal, in A's pipeline "sales"
    task_id: int  # A's task about that deal
    job_id: int = 0  # A's bulk job, queued

    def values(self, case: Case, acting: Tenant) -> dict[str, Any]:
        """What {placeholders} in the case's path and query stand for: A's things by default."""
        keys = {"/fields": FIELD, "/lists": LIST, "/segments": SEGMENT, "/automations": "welcome",
                "/hooks": "welcome", "/templates": "welcome-1", "/pipelines": "sales",
                "/campaigns": "news", "/reports/automations": "welcome",
                "/reports/templates": "welcome-1"}
        values = {
            "contact_id": self.contact_id,
            "b_contact_id": self.b_contact_id,
            "tag": TAG,
            "list_key": LIST,
            "key": next((v for k, v in keys.items() if case.path.startswith(k)), None),
            "key_id": self.key_id,
            "workspace": acting.workspace.name,
            "workspace_name": acting.workspace.name,
            "b_workspace": self.b.workspace.name,
            # A's secrets: its confirmation link's token, its automation's webhook token
            "token": self._token(case, acting),
            "message_id": self.message_id,
            "channel": "email",
            "provider": "gmail",
            "address": "blocked@example.com",
            "event": "shown",
            "member_id": self.member_id,
            "deal_id": self.deal_id,
            "task_id": self.task_id,
            "write_key": acting.write_key,
            "job_id": self.job_id,
        }
        return values | {k: v.format(**values) for k, v in (case.values or {}).items()}


    def _token(self, case: Case, acting: Tenant) -> str:
        if case.path.startswith("/hooks"):
            return hook_token(self.a.workspace, "welcome")
        if case.path.startswith("/inbound"):
            purpose = "email" if case.path.endswith("email-events") else "sms"
            return inbound_token(self.a.workspace, purpose)
        kind = {"/t/o/": "open", "/t/c/": "click", "/u/": "unsubscribe"}
        for prefix, name in kind.items():
            if case.path.startswith(prefix):
                # A's message, signed with the secret of whoever presents it.
                link = 0 if name == "click" else None
                return tracking.sign(
                    acting.workspace.secret, name, self.a.workspace.id, self.message_id, link
                )
        return self.token


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def send(
    client: httpx.Client,
    world: World,
    case: Case,
    headers: dict[str, str],
    *,
    acting: Tenant | None = None,
    body_key: str | None = None,
) -> httpx.Response:
    values = world.values(case, acting or world.a)
    params = {k: v.format(**values) for k, v in (case.params or {}).items()}
    kwargs: dict[str, Any] = {"params": params, "headers": dict(headers)}
    if case.csv is not None:
        kwargs["content"] = case.csv.encode()
        kwargs["headers"]["Content-Type"] = "text/csv"
    elif case.form is not None:
        kwargs["data"] = case.form
    elif case.body is not None:
        body = fill(case.body, values)
        kwargs["json"] = body if body_key is None else {**body, "writeKey": body_key}
    return client.request(case.method, case.path.format(**values), **kwargs)


def fill(body: Any, values: dict[str, Any]) -> Any:
    """The body with "{placeholder}" strings replaced by their values (ints stay ints)."""
    if isinstance(body, dict):
        return {k: fill(v, values) for k, v in body.items()}
    if isinstance(body, list):
        return [fill(v, values) for v in body]
    if isinstance(body, str) and body.startswith("{") and body[1:-1] in values:
        return values[body[1:-1]]
    return body


def check(
    response: httpx.Response, status: int, subset: dict[str, Any] | None = None, note: str = ""
) -> None:
    where = f"{note} {response.request.method} {response.request.url}".strip()
    assert response.status_code == status, f"{where}: {response.status_code} {response.text}"
    if subset:
        body = response.json()
        assert {k: body.get(k) for k in subset} == subset, f"{where}: {body}"


def check_problem(response: httpx.Response, status: int, note: str = "") -> None:
    check(response, status, note=note)
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer"), response.headers


# Tables of no workspace: the log consumers' positions, rate buckets, worker heartbeats.
GLOBAL_TABLES = {"log_cursors", "rate_buckets", "report_progress", "worker_heartbeats"}
# Moved on purpose by `Pristine.restore` (to a value never seen before): see there.
VOLATILE = {("workspaces", "catalog_version")}


def a_statements(workspace_id: int) -> list[tuple[str, Select[Any]]]:
    """A SELECT of workspace A's rows for every table of the schema: by its `workspace_id`, or
    (for the few child tables without one) through the parent row's. A table added without a
    way to find A's rows here fails `test_the_snapshot_reads_every_table`."""
    found = []
    for table in metadata.sorted_tables:
        if table.name in GLOBAL_TABLES:
            continue
        columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
        statement = select(*columns)
        if table.name == "workspaces":
            statement = statement.where(table.c.id == workspace_id)
        elif "workspace_id" in table.c:
            statement = statement.where(table.c.workspace_id == workspace_id)
        else:
            parents = [fk for fk in table.foreign_keys if "workspace_id" in fk.column.table.c]
            if not parents:
                continue
            fk = parents[0]
            parent = fk.column.table
            statement = statement.join_from(table, parent, fk.parent == fk.column).where(
                parent.c.workspace_id == workspace_id
            )
        found.append((table.name, statement))
    return found


def snapshot(engine: Engine, world: World) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of workspace A, every column, in every table, read in one transaction: what
    any request of B's (or a bad key) might have changed. (This was 32 admin GETs of A's API
    before — half of this file's time — and saw less: only what those listings show.)"""
    with engine.connect() as conn:
        return {
            name: sorted((tuple(row) for row in conn.execute(statement)), key=repr)
            for name, statement in a_statements(world.a.workspace.id)
        }


def unchanged(engine: Engine, world: World, before: dict[str, Any], what: str) -> None:
    after = snapshot(engine, world)
    changed = {
        name: {"gone": [r for r in rows if r not in after[name]],
               "new": [r for r in after[name] if r not in rows]}
        for name, rows in before.items() if after[name] != rows
    }
    assert not changed, f"{what}: workspace A changed: {changed}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Conveyor, LiveServer]]:
    """A conveyor and its live server per dialect, for the whole module."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("isolation") / "conveyor.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:  # the session's database, emptied: an earlier test's worker heartbeat would make
        # /readyz ready here
        url = request.getfixturevalue("postgres_url")
        empty_database(url)
    settings = Settings(database_url=url, data_dir=tmp_path_factory.mktemp("data"))
    conveyor = bootstrap(settings, clock=SimulatedClock())
    smtp = SmtpSink().start()
    conveyor.settings.smtp_url = smtp.url  # every tenant's email goes to the local sink
    request.addfinalizer(smtp.stop)
    with LiveServer(create_app(conveyor)) as server:
        # conftest's socket has proto 0, so asyncio leaves Nagle on for accepted connections
        # and each response waits ~40 ms for a delayed ACK; accepted sockets inherit this.
        server.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        yield conveyor, server
    conveyor.close()


@pytest.fixture
def client(shared: tuple[Conveyor, LiveServer]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared[1].url, timeout=30) as http:
        yield http


class Pristine:
    """The world as first built, byte for byte — SQLite's pages (the backup API), PostgreSQL's
    tables (COPY) and sequences — and A's snapshot then; `restore` puts the database back.

    The app keeps a few things in memory between requests: condition contexts (kept until a
    workspace's `catalog_version` moves, so a restore moves it to a value never seen before)
    and keys it checked a moment ago (forgotten for both workspaces)."""

    def __init__(self, conveyor: Conveyor, url: str, world: World) -> None:
        self.conveyor, self.world = conveyor, world
        self.engine = make_engine(url)
        self.snapshot = snapshot(self.engine, world)
        self.restores = 0
        self.dirty = False
        self.tables: dict[str, bytes] = {}
        self.sequences: list[Any] = []
        if self.engine.dialect.name == "sqlite":
            self.pages = sqlite3.connect(":memory:", check_same_thread=False)
            with self.engine.connect() as conn:
                conn.connection.driver_connection.backup(self.pages)
            return
        with self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            for table in metadata.sorted_tables:
                with cursor.copy(f'COPY "{table.name}" TO STDOUT') as copy:
                    self.tables[table.name] = b"".join(bytes(block) for block in copy)
            self.sequences = conn.exec_driver_sql(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), "
                "last_value FROM pg_sequences"
            ).all()

    def restore(self) -> None:
        self.restores += 1
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:  # the backup API writes outside a transaction
                self.pages.backup(conn.connection.driver_connection)
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    "; ".join(f'DELETE FROM "{t.name}"' for t in reversed(metadata.sorted_tables))
                )
                cursor = conn.connection.driver_connection.cursor()
                for name, data in self.tables.items():
                    if data:
                        with cursor.copy(f'COPY "{name}" FROM STDIN') as copy:
                            copy.write(data)
                for name, last in self.sequences:
                    conn.exec_driver_sql(
                        f"SELECT setval('{name}', {last or 1}, {last is not None})"
                    )
            # The inserts' triggers moved it on PostgreSQL; on both, a value never seen before.
            for tenant in (self.world.a, self.world.b):
                conn.execute(
                    update(workspaces)
                    .where(workspaces.c.id == tenant.workspace.id)
                    .values(catalog_version=10_000 * self.restores)
                )
        for tenant in (self.world.a, self.world.b):
            self.conveyor.workspaces.key_cache.forget(workspace_id=tenant.workspace.id)
        self.dirty = False

    def close(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self.pages.close()
        self.engine.dispose()


@pytest.fixture(scope="module")
def pristine(shared: tuple[Conveyor, LiveServer]) -> Iterator[Pristine]:
    conveyor, server = shared
    with httpx.Client(base_url=server.url, timeout=30) as http:
        world = build_world(conveyor, http)
    kept = Pristine(conveyor, str(conveyor.settings.database_url), world)
    yield kept
    kept.close()


@pytest.fixture
def world(pristine: Pristine) -> World:
    """A (`tenant`) with a contact, field, lists, segment, automation, keys and events; B with
    its own of each, under other keys: as first built, whatever the last test did."""
    if pristine.dirty:
        pristine.restore()
    pristine.dirty = True
    return pristine.world


@pytest.fixture
def reading_world(pristine: Pristine) -> World:
    """The world for a case that only reads as A's admin (an admin GET): it is not restored
    after one (each such test asserts A unchanged after it, so a read that wrote fails there)."""
    if pristine.dirty:
        pristine.restore()
    return pristine.world


def reads_only(case: Case) -> bool:
    return case.method == "GET" and case.access == ADMIN


def build_world(conveyor: Conveyor, client: httpx.Client) -> World:
    tenant, other_tenant = make_tenant(conveyor, "acme"), make_tenant(conveyor, "globex")
    for path, body in [
        ("/fields", {"key": FIELD, "type": "text"}),
        ("/lists", {"key": LIST}),
        ("/lists", {"key": DOI_LIST, "double_opt_in": True}),
        ("/contacts", {"email": EMAIL, "external_id": EXTERNAL_ID, "fields": {FIELD: "pro"},
                       "tags": [TAG], "lists": {LIST: "subscribed", DOI_LIST: "subscribed"},
                       "score": 5}),
        ("/segments", {"key": SEGMENT, "condition": {"tag": TAG}}),
    ]:
        check(client.post(path, json=body, headers=tenant.admin), 201)
    check(client.put("/scoring-model", json=SCORING, headers=tenant.admin), 200)
    contact = client.get("/contacts/lookup", params={"email": EMAIL}, headers=tenant.admin).json()
    assert contact["lists"] == {LIST: "subscribed", DOI_LIST: "unconfirmed"}
    calls = [{"type": r, **tracking_body(r, f"a-{r}")} for r in TRACKING_CALLS]
    calls.append({**tracking_body("batch", "a-batch")["batch"][0]})
    check(client.post("/v1/batch", json={"batch": calls}, headers=tenant.write), 200,
          {"accepted": len(calls), "errors": []})
    spare = client.post("/keys", json={"kind": "write", "name": "spare"}, headers=tenant.admin)
    old = client.post("/keys", json={"kind": "admin", "name": "old"}, headers=tenant.admin)
    check(client.delete(f"/keys/{old.json()['id']}", headers=tenant.admin), 204)
    digest = conveyor.catalog.list(tenant.workspace, DOI_LIST)[0]
    token = confirmation_token(tenant.workspace, contact["id"], digest.id)

    b = other_tenant.admin
    check(client.post("/fields", json={"key": "tier", "type": "text"}, headers=b), 201)
    check(client.post("/lists", json={"key": "promo"}, headers=b), 201)
    check(client.post("/segments", json={"key": "b-seg", "condition": {"tag": "b-tag"}},
                      headers=b), 201)
    bob = client.post("/contacts", json={"email": "bob@example.com", "tags": ["b-tag"]}, headers=b)
    check(bob, 201)
    check(client.post("/v1/track", json={"userId": "u-bob", "event": "signed_up"}, headers=b), 200)
    check(client.post("/templates", json={"key": "welcome-1", **TEMPLATE},
                      headers=tenant.admin), 200)
    check(client.post("/templates", json={"key": "b-tpl", **TEMPLATE}, headers=b), 200)
    # Each workspace has an active automation with its contact inside, a step and a message.
    b_automation = {**AUTOMATION, "triggers": [{"list_subscribed": "promo"}],
                    "nodes": [{**AUTOMATION["nodes"][0], "template": "b-tpl"},
                              AUTOMATION["nodes"][1]]}
    for headers, key, definition, contact_id in [
        (tenant.admin, "welcome", AUTOMATION, contact["id"]),
        (b, "b-auto", b_automation, bob.json()["id"]),
    ]:
        check(client.post("/automations", json={**definition, "key": key}, headers=headers), 200)
        check(client.patch(f"/automations/{key}", json={"status": "active"}, headers=headers),
              200)
        check(client.post(f"/automations/{key}/enroll", json={"contact_id": contact_id},
                          headers=headers), 200)
    for headers in (tenant.admin, b):
        check(client.put("/channels/email", json={"from": "shop@example.com"}, headers=headers),
              200)
    check(client.post("/suppressions", json={"channel": "email", "address": "blocked@example.com"},
                      headers=tenant.admin), 201)
    conveyor.engine.run_until_idle()
    conveyor.delivery.run_until_idle()
    conveyor.engine.run_until_idle()
    items = client.get("/messages", headers=tenant.admin).json()["items"]
    [message] = [m for m in items if m["template"] == "welcome-1"]  # (and the DOI confirmation)
    assert message["status"] == "sent", message
    # The sales side: each workspace has a member, a pipeline, a deal and a task of its own.
    crm = {}
    for headers, who, pipeline, contact_id, field in [
        (tenant.admin, "max", "sales", contact["id"], "source"),
        (b, "eve", "b-pipe", bob.json()["id"], "channel"),
    ]:
        member = client.post("/members", headers=headers,
                             json={"name": who, "email": f"{who}@example.com"})
        check(member, 201)
        check(client.post("/pipelines", headers=headers, json={**PIPELINE, "key": pipeline}), 200)
        check(client.post("/deal-fields", headers=headers,
                          json={"key": field, "type": "text"}), 201)
        check(client.put(f"/contacts/{contact_id}/owner", headers=headers,
                         json={"member": member.json()["id"]}), 200)
        deal = client.post("/deals", headers=headers, json={
            "title": "Deal", "pipeline": pipeline, "contact_id": contact_id, "value": 100,
            "owner_id": member.json()["id"]})
        check(deal, 201)
        task = client.post("/tasks", headers=headers, json={
            "title": "Call", "deal_id": deal.json()["id"], "assignee_id": member.json()["id"]})
        check(task, 201)
        crm[who] = (member.json()["id"], deal.json()["id"], task.json()["id"])
    # Each workspace has a draft campaign and a queued bulk job of its own.
    check(client.post("/campaigns", headers=tenant.admin, json={
        "key": "news", "template": "welcome-1", "audience": A_AUDIENCE}), 200)
    check(client.post("/campaigns", headers=b, json={
        "key": "b-news", "template": "b-tpl", "audience": {"lists": ["promo"]}}), 200)
    job = client.post("/bulk-jobs", headers=tenant.admin, json={
        "action": "tag", "audience": {"lists": [LIST]}, "params": {"tag": "x"}, "confirm": True})
    check(job, 201)
    check(client.post("/bulk-jobs", headers=b, json={
        "action": "tag", "audience": {"lists": ["promo"]}, "params": {"tag": "x"},
        "confirm": True}), 201)
    return World(tenant, other_tenant, contact["id"], bob.json()["id"], spare.json()["id"],
                 old.json()["key"], token, message["id"], *crm["max"], job.json()["id"])


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every APIRoute; the docs and /openapi.json are plain Starlette routes."""
    found = set()
    for context in iter_route_contexts(app.routes):
        if isinstance(getattr(context, "original_route", context), APIRoute):
            found |= {(method, context.path) for method in context.methods}
    return found


def test_every_route_has_an_isolation_case(shared: tuple[Conveyor, LiveServer]) -> None:
    routes = app_routes(create_app(shared[0]))
    covered = {(case.method, case.path) for case in CASES}
    assert len(routes) > 30
    assert not routes - covered, f"routes without an isolation case: {sorted(routes - covered)}"
    assert not covered - routes, f"cases for routes that do not exist: {sorted(covered - routes)}"


def bad_credentials(world: World, case: Case) -> list[tuple[str, dict[str, str], str | None]]:
    """(label, headers, writeKey in the body) that must all get a 401."""
    header_only = [
        ("no key", {}, None),
        ("unknown bearer", bearer("cvk_not_a_key"), None),
        ("empty bearer", {"Authorization": "Bearer"}, None),
        ("revoked key", bearer(world.revoked_key), None),
        ("unknown basic", basic("cvk_not_a_key"), None),
        ("revoked basic", basic(world.revoked_key), None),
        ("malformed basic", {"Authorization": "Basic %%%"}, None),
        ("unsupported scheme", {"Authorization": f"Token {world.a.admin_key}"}, None),
    ]
    if case.access == TRACKING and case.body is not None:
        return [*header_only, ("unknown writeKey", {}, "cvk_not_a_key"),
                ("revoked writeKey", {}, world.revoked_key)]
    if case.body is not None and case.access != SITE:  # only /v1 reads keys from the body
        return [*header_only, ("admin key in body", {}, world.a.admin_key)]
    return header_only


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_route_is_isolated_and_checks_keys(
    case: Case, client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    """One test per route (a restore of the world costs ~50 ms; admin reads need none): every
    key check runs in here."""
    world = request.getfixturevalue("reading_world" if reads_only(case) else "world")
    pristine = request.getfixturevalue("pristine")

    expected = {k: fill(v, world.values(case, world.a)) for k, v in (case.cross_json or {}).items()}
    response = send(client, world, case, world.b.admin, acting=world.b)
    check(response, case.cross, expected, "B's admin key:")
    if case.cross >= 400 and case.access != PUBLIC:
        check_problem(response, case.cross, "B's admin key:")

    if case.access == PUBLIC:  # no key needed, and one changes nothing
        check(send(client, world, case, {}, acting=world.b), case.cross, note="no key:")
    else:
        for label, headers, body_key in bad_credentials(world, case):
            check_problem(send(client, world, case, headers, body_key=body_key), 401, label)
        for write in (bearer(world.a.write_key), basic(world.a.write_key)):
            response = send(client, world, case, write)
            if case.access == ADMIN:
                check_problem(response, 403, "write key:")
            elif case.access == SITE:  # the website's own key: as A's admin would see it
                check(response, case.own, note="write key:")
            else:  # A's calls again: duplicates of the seeded ones, accepted and ignored
                check(response, 200, case.own_json, "write key:")

    unchanged(pristine.engine, world, pristine.snapshot, case.id)
    # The control: the very same request works for A, so B's 404 is not a typo here.
    expected = {k: fill(v, world.values(case, world.a)) for k, v in (case.own_json or {}).items()}
    check(send(client, world, case, world.a.admin), case.own, expected, "A's admin key:")


KEY_FORMS = {
    "bearer write key": lambda t: (bearer(t.write_key), None),
    "bearer admin key": lambda t: (bearer(t.admin_key), None),
    "basic write key": lambda t: (basic(t.write_key), None),
    "basic admin key": lambda t: (basic(t.admin_key), None),
    "writeKey in body": lambda t: ({}, t.write_key),
}


@pytest.mark.parametrize("form", KEY_FORMS)
def test_tracking_takes_every_key_form_and_stays_in_its_workspace(
    form: str, world: World, client: httpx.Client, pristine: Pristine
) -> None:
    """B's calls about A's contact (same user id, email, anonymous id) land in B, never in A."""
    headers, body_key = KEY_FORMS[form](world.b)
    sent = set()
    for case in BY_ACCESS[TRACKING]:
        route = case.path.removeprefix("/v1/")
        if route not in (*TRACKING_CALLS, "batch"):
            continue  # analytics.js's short paths: the same endpoints (their own cases above)
        message_id = f"b-{form}-{route}"
        sent.add(message_id)
        body = tracking_body(route, message_id)
        if body_key is not None:
            body["writeKey"] = body_key
        response = client.post(case.path, json=body, headers=headers)
        check(response, 200, {"accepted": 1, "duplicates": 0})
    unchanged(pristine.engine, world, pristine.snapshot, f"{form}: B's calls")
    logged = client.get("/events", params={"limit": 500}, headers=world.b.admin).json()["items"]
    assert sent <= {event["message_id"] for event in logged}


def test_listings_show_only_their_own_workspace(world: World, client: httpx.Client) -> None:
    def get(tenant: Tenant, path: str, **params: Any) -> Any:
        response = client.get(path, params=params, headers=tenant.admin)
        check(response, 200)
        return response.json()

    def ids(tenant: Tenant) -> dict[str, set[Any]]:
        return {
            "contacts": {c["id"] for c in get(tenant, "/contacts", limit=500)["items"]},
            "emails": {c["email"] for c in get(tenant, "/contacts", limit=500)["items"]},
            "events": {e["id"] for e in get(tenant, "/events", limit=500)["items"]},
            "lists": {item["key"] for item in get(tenant, "/lists")},
            "fields": {item["key"] for item in get(tenant, "/fields")},
            "segments": {item["key"] for item in get(tenant, "/segments")},
            "automations": {item["key"] for item in get(tenant, "/automations")},
            "outbox": {item["id"] for item in get(tenant, "/outbox")["items"]},
            "keys": {item["id"] for item in get(tenant, "/keys")},
            "members": {item["id"] for item in get(tenant, "/members")},
            "deals": {item["id"] for item in get(tenant, "/deals")},
            "tasks": {item["id"] for item in get(tenant, "/tasks")},
            "exported": {
                json.loads(line)["id"]
                for line in client.get("/contacts/export", params={"format": "ndjson"},
                                       headers=tenant.admin).text.splitlines()
            },
        }

    mine, theirs = ids(world.a), ids(world.b)
    for kind in mine:
        assert mine[kind] and theirs[kind], kind  # both workspaces have some of each
        assert not mine[kind] & theirs[kind], f"B's /{kind} shows A's {mine[kind] & theirs[kind]}"
    # Filters naming A's email, tag and event name find nothing in B.
    assert get(world.b, "/contacts", email=EMAIL)["items"] == []
    assert get(world.b, "/contacts", tag=TAG)["items"] == []
    assert get(world.b, "/events", name="order_completed")["items"] == []
    assert get(world.a, "/contacts", tag=TAG)["items"]  # they do find A's, for A
    # A's list is not B's to filter by; a cursor from A's id range pages only B's rows.
    check_problem(client.get("/contacts", params={"list": LIST}, headers=world.b.admin), 422)
    cursor = base64.urlsafe_b64encode(b"c0").decode().rstrip("=")
    assert {c["id"] for c in get(world.b, "/contacts", cursor=cursor)["items"]} == theirs["contacts"]


TOKEN_CASES = [c for c in CASES if c.access == PUBLIC and "{token}" in c.path]


@pytest.mark.parametrize("case", TOKEN_CASES, ids=lambda c: c.id)
def test_a_non_ascii_token_finds_nothing_and_records_nothing(
    case: Case, world: World, client: httpx.Client, pristine: Pristine
) -> None:
    """Tokens are parsed and compared in one place; `int('²')` and comparing non-ASCII text
    with `hmac.compare_digest` used to answer 500 on every one of these routes."""
    assert len(TOKEN_CASES) >= 9  # open, click, unsubscribe GET+POST, confirm, hook, 3 inbound
    good = world.values(case, world.a)["token"]
    variants = ["²", "é" * len(good), good + "é", "²" + good[1:], good[:2] + "²" + good[2:],
                good[:-1] + "é", "١.٢.٣.x"]
    for bad in variants:
        response = send(client, world, replace(case, values={"token": bad}), {})
        check(response, 404, note=f"token {bad!r}:")
    unchanged(pristine.engine, world, pristine.snapshot, f"{case.id}, a bad token")


def test_the_snapshot_reads_every_table(pristine: Pristine) -> None:
    """Each table of the schema is a global one or has a way to find A's rows, and the world
    puts rows of A's in most of them — a snapshot of nothing would compare equal forever."""
    read = {name for name, _ in a_statements(pristine.world.a.workspace.id)}
    assert read | GLOBAL_TABLES == {t.name for t in metadata.sorted_tables}
    filled = {name for name, rows in pristine.snapshot.items() if rows}
    assert {"workspaces", "contacts", "contact_tags", "events", "runs", "outbox", "api_keys",
            "segment_members", "automation_versions", "template_versions", "deals",
            "tasks", "campaigns", "bulk_jobs"} <= filled, sorted(filled)


def test_a_change_to_any_of_a_rows_is_seen(pristine: Pristine, world: World) -> None:
    """The comparison itself: one column of one row of A's changed behind the API's back."""
    contacts = metadata.tables["contacts"]
    with pristine.engine.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.id == world.contact_id)
                     .values(first_name="Behind-the-API"))
    with pytest.raises(AssertionError, match="Behind-the-API"):
        unchanged(pristine.engine, world, pristine.snapshot, "a direct write")
