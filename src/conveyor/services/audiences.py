"""An audience as written (list, segment keys, tags, exclusions) resolved to ids for the store,
shared by campaigns and bulk jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.domain.campaigns import parse_audience
from conveyor.domain.errors import InvalidInput
from conveyor.domain.workspaces import Workspace
from conveyor.services.conditions import ConditionContext
from conveyor.store.audiences import AudienceIds
from conveyor.store.records import CampaignRecord
from conveyor.store.store import Tx


def resolve(
    tx: Tx, workspace: Workspace, raw: dict[str, Any], needs: str | None, now: datetime
) -> AudienceIds:
    """An audience's list and segment keys as ids, and its condition parsed against the
    workspace (decided at `now`); an unknown list, segment or field is a 422 naming it."""
    audience = parse_audience(raw)
    condition = None
    if audience.condition is not None:
        ctx = ConditionContext(tx, workspace)
        try:
            condition = (ctx.scope(now), ctx.parse(audience.condition))
        except InvalidInput as exc:
            raise exc.prefixed("audience.condition") from None
    lists = {r.key: r.id for r in tx.catalog.lists(workspace.id)}
    segments = {r.key: r.id for r in tx.segments.all(workspace.id)}

    def ids(keys: tuple[str, ...], known: dict[str, int], where: str) -> tuple[int, ...]:
        for key in keys:
            if key not in known:
                kind = "list" if "lists" in where else "segment"
                raise InvalidInput(where, f"no {kind} '{key}' in this workspace")
        return tuple(known[k] for k in keys)

    return AudienceIds(
        workspace_id=workspace.id,
        lists=ids(audience.lists, lists, "audience.lists"),
        segments=ids(audience.segments, segments, "audience.segments"),
        tags=audience.tags,
        exclude_lists=ids(audience.exclude_lists, lists, "audience.exclude.lists"),
        exclude_segments=ids(audience.exclude_segments, segments, "audience.exclude.segments"),
        exclude_tags=audience.exclude_tags,
        needs="email" if needs == "email" else "phone" if needs == "sms" else None,
        condition=condition,
        dialect=tx.dialect,
    )


def audience_of(row: CampaignRecord) -> dict[str, Any]:
    return {k: v for k, v in row.audience.items() if k != "on_cap"}
