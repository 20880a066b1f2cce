"""What the equivalence tests compare: a workspace's live steps and outbox, read from the store,
in the shape a simulation's report gives its paths."""

from __future__ import annotations

from typing import Any

from conveyor.bootstrap import Conveyor
from conveyor.services.simulate.report import Report

DELIVERY = ("sent", "failed", "bounced", "retrying", "dead")


def live_paths(conveyor: Conveyor, workspace_id: int, contacts: list[int]) -> dict[int, list[Any]]:
    """Each contact's steps as the live engine and delivery logged them, oldest first."""
    out = {}
    with conveyor.store.read() as tx:
        for contact_id in contacts:
            rows = reversed(tx.automations.timeline(workspace_id, contact_id, None, 10_000))
            out[contact_id] = [
                (r.automation, r.node, r.outcome, r.at, r.reason.get("why"))
                for r in rows
                if r.outcome not in DELIVERY  # what the provider said: not simulated
            ]
    return out


def live_messages(
    conveyor: Conveyor, workspace_id: int, contacts: list[int]
) -> dict[int, list[Any]]:
    out = {}
    with conveyor.store.read() as tx:
        keys = {row.id: row.key for row in tx.automations.all(workspace_id)}
        for contact_id in contacts:
            rows = tx.messages.page(workspace_id, contact_id=contact_id, limit=10_000)
            out[contact_id] = [
                (keys.get(m.automation_id), m.node, m.template, m.created_at, m.status, m.sent_at)
                for m in rows
            ]
    return out


def simulated_paths(report: Report, contacts: list[int]) -> dict[int, list[Any]]:
    return {
        c: [
            (s.automation, s.node, s.outcome, s.at, s.reason.get("why"))
            for s in report.paths.get(c, [])
        ]
        for c in contacts
    }


def simulated_messages(report: Report, contacts: list[int]) -> dict[int, list[Any]]:
    out = {}
    for c in contacts:
        messages = sorted(
            {m.seq: m for m in report.outbox.get(c, [])}.values(), key=lambda m: m.seq
        )
        out[c] = [
            (m.automation, m.node, m.template, m.created_at, m.status, m.sent_at) for m in messages
        ]
    return out


def live_entries(
    conveyor: Conveyor, workspace_id: int, contacts: list[int]
) -> dict[int, list[Any]]:
    """(automation, entered at, queued) of each contact's runs, as the log recorded them."""
    out: dict[int, list[Any]] = {c: [] for c in contacts}
    with conveyor.store.read() as tx:
        for e in tx.events.of_contacts(contacts, ["automation.entered"]):
            props = e.properties
            out[e.contact_id].append((props["automation"], e.timestamp, bool(props.get("queued"))))
    return out
