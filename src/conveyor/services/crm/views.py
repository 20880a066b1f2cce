"""How members, pipelines, deals and tasks read in the API and CLI (from store records)."""

from __future__ import annotations

from typing import Any

from conveyor.domain.crm import from_minor
from conveyor.store.records import DealRecord, MemberRecord, PipelineRecord, TaskRecord


def member_view(member: MemberRecord) -> dict[str, Any]:
    return {
        "id": member.id,
        "name": member.name,
        "email": member.email,
        "role": member.role,
        "created_at": member.created_at,
    }


def pipeline_view(pipeline: PipelineRecord) -> dict[str, Any]:
    return {"key": pipeline.key, "name": pipeline.name, "stages": pipeline.stages}


def deal_view(deal: DealRecord, pipeline: str, contacts: list[int]) -> dict[str, Any]:
    return {
        "id": deal.id,
        "title": deal.title,
        "value": from_minor(deal.value_minor),
        "currency": deal.currency,
        "contact_id": deal.contact_id,
        "contacts": contacts,
        "owner_id": deal.owner_id,
        "pipeline": pipeline,
        "stage": deal.stage,
        "status": deal.status,
        "lost_reason": deal.lost_reason,
        "expected_close": deal.expected_close,
        "fields": deal.fields,
        "created_at": deal.created_at,
        "updated_at": deal.updated_at,
        "closed_at": deal.closed_at,
    }


def task_view(task: TaskRecord) -> dict[str, Any]:
    return {
        "id": task.id,
        "type": task.type,
        "title": task.title,
        "due_at": task.due_at,
        "assignee_id": task.assignee_id,
        "contact_id": task.contact_id,
        "deal_id": task.deal_id,
        "done": task.done_at is not None,
        "done_at": task.done_at,
        "overdue": task.overdue_at is not None,
    }
