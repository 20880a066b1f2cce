"""Automations: the list with 30-day figures, status changes, the live graph, a node's recent
steps, and versions with their differences."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, Response

from conveyor.domain.errors import ConveyorError
from conveyor.domain.permissions import Action
from conveyor.services.signin import SignedIn
from conveyor.web.drawing import draw_graph
from conveyor.web.pages import base, redirect, render, unified_rows
from conveyor.web.session import acting, conveyor_of, signed_in

router = APIRouter(prefix="/automations")
Member = Annotated[SignedIn, Depends(signed_in)]
STATUS_VERBS = {"active": "activated", "paused": "paused", "archived": "archived"}


@router.get("")
async def automation_list(request: Request, member: Member) -> Response:
    rows = conveyor_of(request).automation_views.overview(member.workspace)
    return render(
        request,
        "automations/list.html",
        member,
        section="automations",
        title="Automations",
        rows=rows,
    )


@router.post("/{key}/status")
async def change_status(
    request: Request, key: str, status: Annotated[str, Form()] = ""
) -> Response:
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    if status not in STATUS_VERBS:
        return redirect(
            f"{base()}/automations/{key}", "Choose activate, pause or archive.", failed=True
        )
    conveyor = conveyor_of(request)
    try:
        info = conveyor.automations.set_status(member.workspace, key, status)
    except ConveyorError as exc:
        if exc.status == 404:
            raise
        return redirect(f"{base()}/automations/{key}", exc.detail, failed=True)
    return redirect(f"{base()}/automations/{key}", f"“{info.name}” is {STATUS_VERBS[status]}.")


@router.get("/{key}")
async def automation_page(
    request: Request, member: Member, key: str, version: int | None = None
) -> Response:
    conveyor = conveyor_of(request)
    graph = conveyor.automation_views.graph(member.workspace, key, version)
    return render(
        request,
        "automations/graph.html",
        member,
        section="automations",
        title=graph.name,
        graph=graph,
        svg=draw_graph(graph),
        # Its split tests: each path's counts and rate, and the decision with its statistics.
        tests=conveyor.experiments.of_automation(member.workspace, key),
    )


@router.get("/{key}/live.json")
async def live_counts(request: Request, member: Member, key: str) -> Response:
    live = conveyor_of(request).automation_views.live(member.workspace, key)
    return JSONResponse(live, headers={"Cache-Control": "no-store"})


@router.get("/{key}/nodes/{node}")
async def node_steps(request: Request, member: Member, key: str, node: str) -> Response:
    """A node's recent steps: a page of its own, or (asked by the graph's script) the panel's
    fragment that opens beside the graph."""
    views = conveyor_of(request).automation_views
    graph = views.graph(member.workspace, key)
    if node not in graph.automation.nodes:
        return render(
            request,
            "error.html",
            member,
            status=404,
            title="Not found",
            status_code=404,
            detail=f"“{graph.name}” has no node {node}.",
            section="automations",
        )
    steps = views.node_steps(member.workspace, key, node)
    fragment = request.query_params.get("fragment") == "1"
    return render(
        request,
        "automations/node_fragment.html" if fragment else "automations/node.html",
        member,
        section="automations",
        title=f"{graph.name}: {node}",
        graph=graph,
        node=graph.automation.nodes[node],
        counts=graph.counts.get(node),
        steps=steps,
    )


@router.get("/{key}/versions")
async def versions(
    request: Request, member: Member, key: str, a: int | None = None, b: int | None = None
) -> Response:
    views = conveyor_of(request).automation_views
    graph = views.graph(member.workspace, key)
    listed = views.versions(member.workspace, key)
    newest = graph.newest
    b = b or newest
    a = a if a is not None else max(1, b - 1)
    lines: list[tuple[str, str]] = []
    if listed:
        before = views.definition_yaml(member.workspace, key, a).splitlines()
        after = views.definition_yaml(member.workspace, key, b).splitlines()
        lines = unified_rows(before, after, f"version {a}", f"version {b}")
    return render(
        request,
        "automations/versions.html",
        member,
        section="automations",
        title=f"{graph.name}: versions",
        graph=graph,
        versions=listed,
        a=a,
        b=b,
        diff=lines,
    )
