"""Segment-spec tracking endpoints: /v1/identify, track, page, screen, group, alias and batch.

They take the same JSON, auth conventions (Bearer, Basic with the key as username, or `writeKey`
in the body) and any Content-Type (analytics.js sends text/plain), so Segment and RudderStack
SDKs can point here unchanged. Admin and write keys both work.

The SDKs' own paths are answered too (read off their sources): analytics.js (analytics-next)
posts each call to `{apiHost}/{first letter of its type}` — `/v1/t`, `/v1/i`, `/v1/p`, `/v1/s`,
`/v1/g`, `/v1/a` with the default apiHost — batches to `{apiHost}/b`, and its own error counters
to `{apiHost}/m`; Segment's mobile SDKs batch to `/v1/b`. With an apiHost of the bare host the
same letters come without `/v1`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from conveyor.api.auth import conveyor_of, principal
from conveyor.api.problems import from_error, problem
from conveyor.api.schemas import TrackingOut
from conveyor.domain.errors import FieldError, InvalidInput, ItemError, PayloadTooLarge
from conveyor.domain.messages import Alias, Group, Identify, Page, Screen, Track
from conveyor.domain.payloads import check_depth
from conveyor.domain.workspaces import Workspace
from conveyor.services.ingest import IngestResult
from conveyor.settings import Settings
from conveyor.telemetry import SDK_METRICS

router = APIRouter(prefix="/v1", tags=["tracking"])
short_router = APIRouter(tags=["tracking"], include_in_schema=False)
NUL = b"\\u0000"  # how JSON spells it; PostgreSQL refuses it in text and jsonb
_MODELS = {
    "identify": Identify,
    "track": Track,
    "page": Page,
    "screen": Screen,
    "group": Group,
    "alias": Alias,
}


def _body_schema(model: Any) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    # The endpoint says the type: the body may leave it out.
    schema["required"] = [name for name in schema.get("required", []) if name != "type"]
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _read(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("body", "is not valid JSON") from None


def _errors(errors: list[ItemError]) -> list[dict[str, Any]]:
    return [e.as_dict() for e in errors]


def _screen(call: Any, settings: Settings) -> None:
    """What is checked on a call's JSON before it is parsed: its nesting depth (first: deeper
    than 254 levels it cannot even be measured as JSON), its size and NUL characters."""
    check_depth(call, settings.max_json_depth)
    dumped = orjson.dumps(call)
    if len(dumped) > settings.max_event_bytes:
        raise PayloadTooLarge(f"a call is at most {settings.max_event_bytes} bytes")
    if NUL in dumped:
        raise InvalidInput("", "text with a NUL character (\\u0000) cannot be stored")


async def _ingest(
    request: Request, workspace: Workspace, calls: list[Any], call_type: str | None
) -> IngestResult:
    """Parse the calls (here: a few µs each, cheaper than a hop to a thread) and wait for the
    group writer to commit them with other requests' (services/group_commit.py)."""
    ingest = conveyor_of(request).ingest
    return await asyncio.wrap_future(
        ingest.submit(ingest.parse(workspace, calls, call_type=call_type))
    )


async def _single(request: Request, call_type: str) -> JSONResponse:
    body = await _read(request)
    body_key = body.get("writeKey") if isinstance(body, dict) else None
    who = principal(request, body_key if isinstance(body_key, str) else None)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "writeKey"}
    _screen(body, conveyor_of(request).settings)
    result = await _ingest(request, who.workspace, [body], call_type)
    if result.errors:
        error = result.errors[0]
        return from_error(InvalidInput.many(error.errors))
    return JSONResponse(
        {"success": True, "accepted": result.accepted, "duplicates": result.duplicates}
    )


def _endpoint(call_type: str) -> Any:
    async def endpoint(request: Request) -> JSONResponse:
        return await _single(request, call_type)

    endpoint.__name__ = f"{call_type}_call"
    endpoint.__doc__ = f"Record a Segment-spec `{call_type}` call. Idempotent on `messageId`."
    return endpoint


for _type, _model in _MODELS.items():
    router.add_api_route(
        f"/{_type}",
        _endpoint(_type),
        methods=["POST"],
        response_model=TrackingOut,
        openapi_extra=_body_schema(_model),
        summary=f"{_type.capitalize()} call",
    )
    # analytics.js's short paths: the type's first letter, with and without the /v1 prefix.
    for _prefix in ("/v1", ""):
        short_router.add_api_route(
            f"{_prefix}/{_type[0]}", _endpoint(_type), methods=["POST"], response_model=TrackingOut
        )


@router.post(
    "/batch",
    response_model=TrackingOut,
    summary="Many calls at once",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["batch"],
                        "properties": {
                            "batch": {"type": "array", "items": {"type": "object"}},
                            "context": {"type": "object"},
                            "integrations": {"type": "object"},
                            "sentAt": {"type": "string", "format": "date-time"},
                            "writeKey": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def batch(request: Request) -> JSONResponse:
    """Up to 1,000 calls (500 KB). Good calls are stored even when others are bad; the bad ones
    come back in `errors` with their index. When none is good the answer is a 422 problem."""
    body = await _read(request)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        body_key = body.get("writeKey") if isinstance(body, dict) else None
        principal(request, body_key if isinstance(body_key, str) else None)
        raise InvalidInput("batch", "must be a list of calls")
    body_key = body.get("writeKey")
    who = principal(request, body_key if isinstance(body_key, str) else None)
    settings = conveyor_of(request).settings
    items: list[Any] = body["batch"]
    if len(items) > settings.max_batch_items:
        raise PayloadTooLarge(
            f"a batch holds at most {settings.max_batch_items} calls, this one {len(items)}"
        )
    shared_context = body.get("context") if isinstance(body.get("context"), dict) else None
    # SDKs that batch stamp `sentAt` once on the batch (analytics.js removes it from each call):
    # it is every call's sentAt unless the call has its own, so the clock skew rule applies.
    sent_at = body.get("sentAt")
    if shared_context:
        # Merged into every call's own context: one level below the call.
        check_depth(shared_context, settings.max_json_depth - 1, "context")
    calls: list[Any] = []
    rejected: list[ItemError] = []
    positions: list[int] = []
    for index, item in enumerate(items):
        try:
            _screen(item, settings)
        except InvalidInput as exc:
            rejected.append(ItemError(index, exc.errors))
            continue
        except PayloadTooLarge as exc:
            rejected.append(ItemError(index, [FieldError("", exc.detail)]))
            continue
        if shared_context and isinstance(item, dict):
            item = {**item, "context": {**shared_context, **(item.get("context") or {})}}
        if sent_at is not None and isinstance(item, dict) and item.get("sentAt") is None:
            item = {**item, "sentAt": sent_at}
        calls.append(item)
        positions.append(index)
    result = await _ingest(request, who.workspace, calls, None)
    errors = rejected + [ItemError(positions[e.index], e.errors) for e in result.errors]
    errors.sort(key=lambda e: e.index)
    if errors and result.accepted == 0 and result.duplicates == 0:
        return problem(
            422,
            f"none of the {len(items)} calls could be stored",
            slug="invalid-input",
            title="Invalid input",
            errors=_errors(errors),
        )
    return JSONResponse(
        {
            "success": True,
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "errors": _errors(errors),
        }
    )


short_router.add_api_route("/v1/b", batch, methods=["POST"], response_model=TrackingOut)
short_router.add_api_route("/b", batch, methods=["POST"], response_model=TrackingOut)


async def sdk_metrics(request: Request) -> JSONResponse:
    """analytics.js reports its own delivery errors here (no key, `{"series": [...]}`): they are
    counted in Prometheus (`conveyor_sdk_metrics_total`, errors apart) and not stored."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidInput("body", "is not valid JSON") from None
    series = body.get("series") if isinstance(body, dict) else None
    if not isinstance(series, list):
        raise InvalidInput("series", "must be a list of metrics")
    for item in series:
        metric = item.get("metric") if isinstance(item, dict) else None
        kind = "error" if isinstance(metric, str) and "error" in metric else "other"
        SDK_METRICS.labels(kind).inc()
    return JSONResponse({"success": True})


short_router.add_api_route("/v1/m", sdk_metrics, methods=["POST"])
short_router.add_api_route("/m", sdk_metrics, methods=["POST"])


@short_router.get("/v1/projects/{write_key}/settings")
async def sdk_settings(write_key: str, request: Request) -> JSONResponse:
    """What analytics.js fetches from its `cdnURL` on load: pointed at Conveyor
    (`AnalyticsBrowser.load({writeKey, cdnURL: "https://conveyor.example"})`) it learns to send
    every call here, with no other setting. The write key is the one the page already shows."""
    await run_in_threadpool(principal, request, write_key)
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
    protocol = request.headers.get("x-forwarded-proto") or request.url.scheme
    return JSONResponse(
        {
            "integrations": {
                "Segment.io": {
                    "apiKey": write_key,
                    "apiHost": f"{host}/v1",
                    "protocol": protocol,
                    "unbundledIntegrations": [],
                    "addBundledMetadata": True,
                }
            },
            "plan": {"track": {"__default": {"enabled": True}}},
            "metrics": {"sampleRate": 0},
        }
    )
