"""The OpenAPI document, made honest for client generators (issue 19).

FastAPI documents every error as its own `HTTPValidationError` with status 422 only, while the
API answers RFC 9457 `application/problem+json` with 401, 403, 404, 409, 413 and 422: a client
generated from that schema fails on the first error it parses. Here, after FastAPI builds the
document, every operation gets:

- its error statuses, each a `Problem` (`application/problem+json`): 401 (and 403 for admin routes)
  where a key is needed, 404 where the path names a row, 409 for changes on admin routes, 413 and
  422 where a body or parameters are taken, and 500;
- its security: admin routes (FastAPI marks those depending on `admin_workspace`, through its
  `bearer` scheme) a Bearer admin key; the Segment-compatible `/v1/*` routes a Bearer or Basic
  write key; the rest (health, confirmation links, inbound hooks with their own token, the SDK)
  none;
- an example for its request body, from `EXAMPLES` by operation id (a test requires one for every
  operation that takes a body).

Operation ids are the route functions' names (`create_contact`, not
`create_contact_contacts_post`); `unique_id` is handed to FastAPI for that.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from conveyor.api.problems import PROBLEM

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; `field` names the bad input.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A URI reference, or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "The first bad field, dotted"},
        "errors": {
            "type": "array",
            "description": "Every bad field (for a batch: every bad call, by `index`)",
            "items": {"$ref": "#/components/schemas/ProblemError"},
        },
    },
}
PROBLEM_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "ProblemError",
    "properties": {
        "field": {"type": "string"},
        "detail": {"type": "string"},
        "in": {"type": "string", "description": "body, path, query or header"},
        "index": {"type": "integer", "description": "The call's position in a batch"},
        "row": {"type": "integer", "description": "The line of a CSV file"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
SECURITY_SCHEMES = {
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "Segment's form for tracking calls: the write key as username",
    },
}
REASONS = {
    401: "No key, or a key that is not valid",
    403: "A write key on an admin route",
    404: "No such row in this workspace",
    409: "In conflict with what is stored",
    413: "The body is too large",
    422: "Invalid input; `field` names it",
    500: "An unexpected error (logged)",
}

_CONTACT = {
    "email": "ada@example.com",
    "external_id": "u-ada",
    "first_name": "Ada",
    "tags": ["vip"],
    "fields": {"plan": "pro"},
    "lists": {"newsletter": "subscribed"},
}
_AUTOMATION = {
    "key": "welcome",
    "name": "Welcome series",
    "triggers": [{"list_subscribed": "newsletter"}],
    "entry": {"repeat": "once"},
    "nodes": [
        {"id": "hello", "type": "send_email", "template": "welcome-1"},
        {"id": "pause", "type": "wait", "for": "7 days"},
        {"id": "tips", "type": "send_email", "template": "welcome-2"},
    ],
}
_TEMPLATE = {
    "key": "welcome-1",
    "channel": "email",
    "content": {"subject": "Welcome, {{ contact.first_name }}", "html": "<p>Hello!</p>"},
}
_POLICY = {
    "caps": {"email": [{"max": 1, "per": "16 hours"}, {"max": 3, "per": "7 days"}]},
    "windows": {"sms": {"from": "08:00", "to": "21:00"}},
    "repeat_within": "30 days",
}
_PIPELINE = {
    "key": "sales",
    "name": "Sales",
    "stages": [{"name": "Lead", "probability": 10}, {"name": "Qualified", "probability": 30},
               {"name": "Proposal", "probability": 60}, {"name": "Won", "probability": 100}],
}  # fmt: skip
_SCORING = {
    "scores": {
        "engagement": {
            "decay": {"half_life": "30 days"},
            "rules": [
                {"id": "email-click", "event": "email.clicked", "points": 5,
                 "cap": {"points": 20, "per": "30 days"}},
                {"id": "pricing-visit", "page_visited": "*/pricing*", "points": 10},
            ],
        }
    }
}  # fmt: skip
_TRACK = {
    "userId": "u-ada",
    "event": "order_completed",
    "properties": {"total": 42.5, "currency": "EUR"},
}
EXAMPLES: dict[str, Any] = {
    "apply_campaign": {
        "key": "march-news", "name": "March newsletter", "channel": "email",
        "template": "newsletter",
        "audience": {"lists": ["newsletter"], "exclude": {"segments": ["inactive"]}},
        "schedule": {"date": "2026-03-03", "local_time": "09:00", "late": "next_day"},
    },
    "count_audience": {"audience": {"lists": ["newsletter"], "exclude": {"tags": ["vip"]}}},
    "preview_campaign": {"contact_id": 1},
    "schedule_campaign": {"schedule": {"at": "2026-03-03T09:00:00Z"}},
    "preview_bulk_job": {"action": "enroll", "audience": {"segments": ["vips"]},
                         "params": {"automation": "welcome"}},
    "create_bulk_job": {"action": "tag", "audience": {"lists": ["newsletter"]},
                        "params": {"tag": "spring"}, "confirm": True},
    "identify_call": {"userId": "u-ada", "traits": {"email": "ada@example.com", "plan": "pro"}},
    "track_call": _TRACK,
    "page_call": {"anonymousId": "anon-1", "name": "Pricing",
                  "properties": {"url": "https://shop.example/pricing"}},
    "screen_call": {"userId": "u-ada", "name": "Checkout"},
    "group_call": {"userId": "u-ada", "groupId": "acme", "traits": {"name": "Acme"}},
    "alias_call": {"previousId": "anon-1", "userId": "u-ada"},
    "batch": {"batch": [{"type": "identify", "userId": "u-ada",
                         "traits": {"email": "ada@example.com"}},
                        {"type": "track", **_TRACK}]},
    "create_contact": _CONTACT,
    "import_contacts": "email,first_name,tags\nada@example.com,Ada,vip\n",
    "update_contact": {"first_name": "Ada", "fields": {"plan": "enterprise"}},
    "add_tags": {"tags": ["vip", "beta"]},
    "set_subscription": {"status": "unsubscribed"},
    "change_score": {"delta": 10},
    "declare_field": {"key": "plan", "type": "choice", "choices": ["free", "pro"]},
    "update_field": {"label": "Plan", "choices": ["free", "pro", "enterprise"]},
    "create_list": {"key": "newsletter", "name": "Newsletter", "double_opt_in": True},
    "update_list": {"name": "Weekly newsletter"},
    "create_segment": {"key": "vips", "condition": {"tag": "vip"}},
    "count_condition": {"condition": {"all": [{"tag": "vip"},
                                              {"field": "plan", "op": "eq", "value": "pro"}]}},
    "update_segment": {"condition": {"tag": "vip"}},
    "apply_automation": _AUTOMATION,
    "validate_automation": _AUTOMATION,
    "set_status": {"status": "active"},
    "inbound_webhook": {"email": "ada@example.com", "order": "A-100"},
    "enroll_contact": {"contact_id": 1},
    "create_template": _TEMPLATE,
    "save_template": {"channel": "email", "content": _TEMPLATE["content"]},
    "preview_template": {"contact_id": 1, "event": {"total": 42.5}},
    "put_channel": {"from": "Shop <news@shop.example>",
                    "smtp_url": "smtp://user:secret@smtp.example.com:587"},
    "add_suppression": {"channel": "email", "address": "bounced@example.com",
                        "detail": "bounced at the old provider"},
    "post_email_events": {"events": [{"type": "bounced", "email": "ada@example.com",
                                      "bounce": "hard", "reason": "550 no such user"}]},
    "put_send_policy": _POLICY,
    "put_contact_policy": {"caps": {"email": [{"max": 1, "per": "7 days"}]}},
    "update_settings": {"timezone": "Europe/Warsaw", "default_country": "PL"},
    "plan_workspace": {"prune": False, "resources": [
        {"kind": "list", "key": "newsletter", "source": "lists/lists.yaml",
         "definition": {"key": "newsletter", "name": "Newsletter"}}]},
    "apply_workspace": {"prune": False, "resources": [
        {"kind": "list", "key": "newsletter", "source": "lists/lists.yaml",
         "definition": {"key": "newsletter", "name": "Newsletter"}}]},
    "create_key": {"kind": "write", "name": "website"},
    "site_message_event": {"anonymousId": "anon-1"},
    # the sales side
    "add_member": {"name": "Max", "email": "max@acme.example", "role": "sales"},
    "change_member": {"role": "admin"},
    "set_owner": {"member": "max@acme.example"},
    "apply_pipeline": _PIPELINE,
    "put_pipeline": {"name": "Sales", "stages": _PIPELINE["stages"]},
    "declare_deal_field": {"key": "seats", "type": "number", "label": "Seats"},
    "create_deal": {"title": "Lee: 20 seats", "pipeline": "sales", "contact_id": 1,
                    "value": 4800, "currency": "EUR", "owner_id": 1,
                    "expected_close": "2027-01-31", "fields": {"seats": 20}},
    "update_deal": {"stage": "Proposal", "value": 5200},
    "add_note": {"body": "Called: wants a quote by Friday."},
    "create_task": {"type": "call", "title": "Call Lee about the quote",
                    "due_at": "2027-01-10T09:00:00Z", "assignee_id": 1, "deal_id": 1},
    "update_task": {"done": True},
    # the deliverability guard
    "set_deliverability_rules": {"complaint_rate": 0.002, "bounce_rate": 0.05,
                                 "min_volume": 200, "window": "7 days",
                                 "domains": {"corp-mail.example": "outlook"}},
    # lead scoring
    "put_model": _SCORING,
    "validate_model": _SCORING,
    # try before you trust
    "backtest": {"definition": _AUTOMATION, "from": "30d", "contact": 1},
    "message_forecast": {"definition": _AUTOMATION, "days": 7},
    "try_contact": {"definition": _AUTOMATION, "days": 14,
                    "events": [{"at": "2 days", "event": "email.opened"}]},
    "try_made_up": {"definition": _AUTOMATION, "days": 14,
                    "contact": {"email": "ada@example.com", "first_name": "Ada",
                                "lists": {"newsletter": "subscribed"}}},
    # editing a live automation
    "publish_automation": {"definition": _AUTOMATION, "base_version": 1,
                           "moves": [{"from_version": 1, "from_node": "pause", "to_node": "tips"}]},
}  # fmt: skip


def unique_id(route: APIRoute) -> str:
    """Operation ids: the route function's name."""
    return route.name


def _problem(status: int) -> dict[str, Any]:
    return {
        "description": REASONS[status],
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _operation(path: str, method: str, operation: dict[str, Any]) -> None:
    admin = bool(operation.get("security"))  # FastAPI's, from admin_workspace's `bearer`
    tracking = path.startswith("/v1/")
    responses = operation.setdefault("responses", {})
    statuses = {500}
    if admin or tracking:
        statuses.add(401)
        operation["security"] = [{"bearer": []}] if admin else [{"bearer": []}, {"basic": []}]
    else:
        operation["security"] = []
    if admin:
        statuses.add(403)
        if method in ("post", "put", "patch", "delete"):
            statuses.add(409)
    if "{" in path:
        statuses.add(404)
    if "requestBody" in operation:
        statuses |= {413, 422}
    if operation.get("parameters") or "requestBody" in operation or "422" in responses:
        statuses.add(422)
    for status in sorted(statuses):
        responses[str(status)] = _problem(status)
    example = EXAMPLES.get(operation.get("operationId", ""))
    if example is not None and "requestBody" in operation:
        for media in operation["requestBody"].get("content", {}).values():
            media["example"] = example


def install(app: FastAPI) -> None:
    """Replace `app.openapi` with the honest version (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        schemas["Problem"] = PROBLEM_SCHEMA
        schemas["ProblemError"] = PROBLEM_ERROR_SCHEMA
        components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
        for path, item in schema["paths"].items():
            for method, operation in item.items():
                _operation(path, method, operation)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
