"""What a definition may only say about the workspace as it is: the pipelines and stages its
CRM nodes name. Checked when an automation is validated or applied (not when a stored version
is read back: a pipeline changed since then fails the step at run time, saying why)."""

from __future__ import annotations

from conveyor.domain.automations import Automation
from conveyor.domain.errors import InvalidInput
from conveyor.services.crm.writer import pipeline_of
from conveyor.store.store import Tx


def check_nodes(tx: Tx, workspace_id: int, automation: Automation) -> None:
    pipelines = None
    for i, node in enumerate(automation.nodes.values()):
        key = node.config.get("pipeline")
        if node.type not in ("create_deal", "update_deal") or key is None:
            continue
        if pipelines is None:
            pipelines = {p.key: pipeline_of(p) for p in tx.crm.pipelines(workspace_id)}
        path = f"nodes.{i}"
        pipeline = pipelines.get(key)
        if pipeline is None:
            raise InvalidInput(f"{path}.pipeline", f"no pipeline '{key}' in this workspace")
        if "stage" in node.config:
            pipeline.stage(node.config["stage"], f"{path}.stage")
        for j, stage in enumerate(node.config.get("stages", [])):
            pipeline.stage(stage, f"{path}.stages.{j}")
