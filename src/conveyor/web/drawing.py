"""An automation graph as the panel draws it: each node's title and detail, its box and counts
from the server-side layout, and edges; `templates/automations/_graph.svg` turns it into SVG."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.domain.automations.layout import BOX_H, BOX_W, ENTRY, Route
from conveyor.domain.automations.model import Node, Trigger
from conveyor.services.automation_views import Graph, NodeCounts

KINDS = {
    "send_email": ("Email", "send"),
    "send_sms": ("SMS", "send"),
    "send_site_message": ("Site message", "send"),
    "notify_team": ("Notify team", "send"),
    "webhook": ("Webhook", "send"),
    "wait": ("Wait", "wait"),
    "wait_until": ("Wait until", "wait"),
    "if": ("If / else", "branch"),
    "split": ("Split", "branch"),
    "goal": ("Goal", "goal"),
    "end": ("End", "flow"),
}


@dataclass(frozen=True)
class Box:
    id: str
    kind: str  # send | wait | branch | goal | action | flow | entry
    title: str
    detail: str
    x: float
    y: float
    counts: NodeCounts | None


@dataclass(frozen=True)
class Drawing:
    width: float
    height: float
    boxes: list[Box]
    routes: list[Route]
    box_w: int = BOX_W
    box_h: int = BOX_H


def duration(seconds: int | float | None) -> str:
    if not seconds:
        return ""
    seconds = int(seconds)
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} s"


def describe(node: Node) -> tuple[str, str, str]:
    """(kind, title, detail) of a node, in a marketer's words."""
    c = node.config
    label, kind = KINDS.get(node.type, (node.type.replace("_", " ").capitalize(), "action"))
    if node.type.startswith("send_") or node.type in ("notify_team", "webhook"):
        detail = c.get("template") or c.get("url") or ""
    elif node.type == "wait":
        detail = duration(c.get("for"))
    elif node.type == "wait_until":
        parts = [p for p in (c.get("at"), duration(c.get("timeout"))) if p]
        detail = ("at most " + parts[-1]) if c.get("timeout") else " ".join(parts)
    elif node.type == "split":
        detail = f"{len(c.get('paths', []))} paths"
    elif node.type == "goal":
        otherwise = c.get("otherwise", "continue")
        detail = {"end": "else the run ends", "wait": "else it waits"}.get(otherwise, "")
    else:
        values = [str(v) for k, v in c.items() if k != "name" and isinstance(v, str | int | float)]
        detail = ", ".join(values)
    return kind, _short(c.get("name") or label, 22), _short(detail)


PRESETS = {  # a system event's trigger, as the YAML preset that wrote it reads
    "list.subscribed": "subscribes to {list}",
    "list.unsubscribed": "unsubscribes from {list}",
    "tag.added": "gets tag {tag}",
    "tag.removed": "loses tag {tag}",
    "segment.entered": "enters segment {segment}",
    "segment.exited": "leaves segment {segment}",
}


def trigger_text(trigger: Trigger) -> str:
    """A trigger in a few words: "subscribes to newsletter", "event cart_updated"."""
    if trigger.date is not None:
        return f"yearly on {trigger.date.field}" if trigger.date.yearly else trigger.date.field
    values = {".".join(p.path): p.value for p in trigger.where if p.op == "eq"}
    preset = PRESETS.get(trigger.name)
    if preset is not None and len(values) == len(trigger.where):
        try:
            return preset.format(**values)
        except KeyError:
            pass
    if trigger.url_pattern:
        return f"visits {trigger.url_pattern}"
    where = ", ".join(f"{'.'.join(p.path)} {p.op} {p.value}" for p in trigger.where)
    return f"event {trigger.name}" + (f" ({where})" if where else "")


def _short(text: str, size: int = 30) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def draw_graph(graph: Graph) -> Drawing:
    boxes = []
    for node_id, placed in graph.layout.nodes.items():
        if node_id == ENTRY:
            triggers = [trigger_text(t) for t in graph.automation.triggers]
            detail = _short(triggers[0], 24) if triggers else "by the API or an automation"
            if len(triggers) > 1:
                detail += f" +{len(triggers) - 1}"
            boxes.append(Box(ENTRY, "entry", "When a contact", detail, placed.x, placed.y, None))
            continue
        kind, title, detail = describe(graph.automation.nodes[node_id])
        boxes.append(
            Box(
                node_id,
                kind,
                title,
                detail,
                placed.x,
                placed.y,
                graph.counts.get(node_id, NodeCounts()),
            )
        )
    return Drawing(graph.layout.width, graph.layout.height, boxes, graph.layout.routes)
