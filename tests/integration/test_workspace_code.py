"""A workspace as code: the whole examples/ folder planned and applied into an empty workspace,
plans that change nothing, drift, all-or-nothing, prune, and the same over the HTTP API."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from conveyor.cli.code import read_folder

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def actions(plan) -> dict[str, str]:
    return {f"{c.kind}/{c.key}": c.action for c in plan.changes}


def test_examples_plan_then_apply_into_an_empty_workspace(conveyor, tenant):
    ws = tenant.workspace
    resources = read_folder(EXAMPLES)
    plan = conveyor.code.plan(ws, resources)
    assert plan.errors == [], [(c.key, c.field, c.error) for c in plan.errors]
    assert set(actions(plan).values()) == {"create"}
    assert len(plan.changes) == len(resources)
    # A plan is a dry run: nothing of it is in the workspace.
    assert conveyor.templates.all(ws) == [] and conveyor.automations.all(ws) == []

    applied = conveyor.code.apply(ws, resources)
    assert applied.applied and applied.errors == []
    assert {a.key for a in conveyor.automations.all(ws)} == {
        r.key for r in resources if r.kind == "automation"
    }
    assert conveyor.scoring.model(ws)["definition"]["scores"]["engagement"]
    assert {info.key for info, _ in conveyor.catalog.lists(ws)} == {
        r.key for r in resources if r.kind == "list"
    }
    # Campaigns and automations are applied as drafts (the panel's empty Automations page says
    # so): sending one, or starting one, stays an explicit step.
    assert {c.status for c in conveyor.campaigns.all(ws)} == {"draft"}
    assert {a.status for a in conveyor.automations.all(ws)} == {"draft"}

    again = conveyor.code.plan(ws, resources)
    assert set(actions(again).values()) == {"unchanged"}
    assert not any(c.drifted for c in again.changes)


def test_a_change_outside_the_files_is_drift_and_the_plan_puts_it_back(conveyor, tenant):
    ws = tenant.workspace
    resources = read_folder(EXAMPLES)
    conveyor.code.apply(ws, resources)
    conveyor.templates.save(ws, "offer", "email", {"subject": "Edited in the panel", "html": "x"})
    plan = conveyor.code.plan(ws, resources)
    change = next(c for c in plan.changes if c.key == "offer")
    assert (change.action, change.drifted) == ("update", True)
    assert "-  subject: Edited in the panel" in change.diff
    assert "+  subject: 20% off this weekend" in change.diff
    assert [c.key for c in plan.changes if c.drifted] == ["offer"]


def test_one_error_anywhere_applies_nothing(conveyor, tenant, tmp_path):
    ws = tenant.workspace
    folder = tmp_path / "setup"
    shutil.copytree(EXAMPLES, folder)
    broken = folder / "automations" / "birthday.yaml"
    definition = yaml.safe_load(broken.read_text())
    definition["nodes"][0]["template"] = "no-such-template"
    broken.write_text(yaml.safe_dump(definition))
    plan = conveyor.code.apply(ws, read_folder(folder))
    assert not plan.applied
    [error] = plan.errors
    assert (error.key, error.field, error.source) == (
        "birthday",
        "nodes.0.template",
        "automations/birthday.yaml",
    )
    assert "no email template 'no-such-template'" in error.error
    # Nothing: not the fields, lists or templates before it, not the automations after it.
    assert conveyor.catalog.lists(ws) == [] and conveyor.templates.all(ws) == []
    assert conveyor.automations.all(ws) == [] and conveyor.catalog.fields(ws) == []


def test_references_between_files_and_to_nothing(conveyor, tenant, tmp_path):
    """A file may name what a later file defines (any order); a name nothing defines fails."""
    ws = tenant.workspace
    (tmp_path / "automations").mkdir()
    (tmp_path / "lists").mkdir()
    (tmp_path / "automations" / "a.yaml").write_text(
        yaml.safe_dump(
            {
                "key": "a-first",
                "triggers": [{"list_subscribed": "news"}],
                "entry": {"queue_behind": ["z-last"]},
                "nodes": [{"id": "t", "type": "add_tag", "tag": "x"}],
            }
        )
    )
    (tmp_path / "automations" / "z.yaml").write_text(
        yaml.safe_dump(
            {
                "key": "z-last",
                "triggers": [{"segment_entered": "nobody-defines-it"}],
                "nodes": [{"id": "s", "type": "subscribe", "list": "news"}],
            }
        )
    )
    (tmp_path / "lists" / "l.yaml").write_text(yaml.safe_dump([{"key": "news"}]))
    plan = conveyor.code.plan(ws, read_folder(tmp_path))
    assert [(e.key, e.field, e.error) for e in plan.errors] == [
        (
            "z-last",
            "triggers.0.segment_entered",
            "no segment 'nobody-defines-it' in the folder or the workspace",
        )
    ]
    assert actions(plan)["automation/a-first"] == "create"


def test_prune_removes_what_the_folder_no_longer_holds(conveyor, tenant, tmp_path):
    ws = tenant.workspace
    conveyor.code.apply(ws, read_folder(EXAMPLES))
    folder = tmp_path / "setup"
    shutil.copytree(EXAMPLES, folder)
    (folder / "automations" / "open-or-remind.yaml").unlink()
    (folder / "segments" / "inactive.yaml").unlink()
    kept = conveyor.code.apply(ws, read_folder(folder))
    assert kept.applied and "delete" not in actions(kept).values()
    assert conveyor.automations.get(ws, "open-or-remind").status == "draft"

    pruned = conveyor.code.apply(ws, read_folder(folder), prune=True)
    assert pruned.applied, [(c.key, c.error) for c in pruned.errors]
    deleted = {k for k, a in actions(pruned).items() if a == "delete"}
    assert deleted == {"automation/open-or-remind", "segment/inactive"}
    assert conveyor.automations.get(ws, "open-or-remind").status == "archived"
    assert "inactive" not in {s.key for s in conveyor.segments.all(ws)}
    # The templates only that automation used stay until the folder drops them too.
    assert "offer-reminder" in {t.key for t in conveyor.templates.all(ws)}


def test_the_plan_and_the_apply_over_http(client, tenant, other_tenant):
    resources = [
        {"kind": r.kind, "key": r.key, "source": r.source, "definition": r.definition}
        for r in read_folder(EXAMPLES)
    ]
    r = client.post("/workspace/plan", headers=tenant.admin, json={"resources": resources})
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["create"] == len(resources) and not r.json()["applied"]

    bad = [dict(x) for x in resources]
    auto = next(x for x in bad if x["key"] == "welcome-series")
    auto["definition"] = {
        **auto["definition"],
        "nodes": [{"id": "w", "type": "send_email", "template": "gone"}],
    }
    r = client.post("/workspace/apply", headers=tenant.admin, json={"resources": bad})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [
        {
            "field": "automations/welcome-series.yaml: nodes.0.template",
            "detail": "no email template 'gone' in the folder or the workspace",
        }
    ]
    assert client.get("/automations", headers=tenant.admin).json() == []

    r = client.post("/workspace/apply", headers=tenant.admin, json={"resources": resources})
    assert r.status_code == 200 and r.json()["applied"], r.text
    # Scoped: the other workspace saw nothing of it.
    assert client.get("/automations", headers=other_tenant.admin).json() == []
    r = client.post(
        "/workspace/plan",
        headers=tenant.admin,
        json={"resources": [{"kind": "robot", "key": "x", "definition": {}}]},
    )
    assert r.status_code == 422 and r.json()["field"] == "resources.0"
