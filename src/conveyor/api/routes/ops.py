"""For the operator's tools, without a key: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from conveyor.api.auth import conveyor_of
from conveyor.api.problems import PROBLEM
from conveyor.services.ops import PoolCollector, StoreCollector

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive and answers (looks at nothing else: for a liveness probe)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {
            "description": "Not ready: a problem whose `checks` say which part failed and why",
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    },
)
def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers, its schema is at head, a worker beat recently, and
    the event log and due runs are not too far behind. Each check is named in the answer; when
    one fails, the answer is a 503 problem (RFC 9457) with the same `checks`."""
    readiness = conveyor_of(request).ops.readiness()
    checks = readiness.as_dict()["checks"]
    if readiness.ready:
        return JSONResponse({"status": "ready", "checks": checks})
    failing = [name for name, check in checks.items() if not check["ok"]]
    problem = {
        "type": "about:blank",
        "title": "Not ready",
        "status": 503,
        "detail": "not ready: " + ", ".join(failing),
        "checks": checks,
    }
    return JSONResponse(problem, status_code=503, media_type=PROBLEM)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format: this process's counters, and gauges read from the database."""
    body = generate_latest(REGISTRY) + generate_latest(_store_registry(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _store_registry(request: Request) -> CollectorRegistry:
    """One per app (not the process's global registry): tests and embedders may build several
    apps in a process, each on its own database."""
    registry = getattr(request.app.state, "store_metrics", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        conveyor = conveyor_of(request)
        registry.register(PoolCollector(conveyor.store))
        registry.register(StoreCollector(conveyor.ops))
        request.app.state.store_metrics = registry
    return registry
