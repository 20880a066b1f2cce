"""`conveyor plan DIR`, `conveyor apply DIR`, `conveyor validate DIR`: a workspace as code.

The folder's files are read here (see `domain/workspace_code.py` for its layout); the workspace
is this machine's database, another server's (`--url`/`--key`: the same plan over its HTTP
API), or — for `validate` — a throw-away one, so a user's CI can check a folder with no
database: every schema and every reference within the folder."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.markup import escape

from conveyor.cli.main import WorkspaceOpt, _fail, _open, _workspace, app, out
from conveyor.domain.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.domain.workspace_code import Resource

Folder = Annotated[Path, typer.Argument(exists=True, file_okay=False, readable=True)]
Json = Annotated[bool, typer.Option("--json", help="print the plan as JSON")]
Prune = Annotated[
    bool,
    typer.Option(
        "--prune",
        help="remove automations, segments, templates, pipelines "
        "the folder no longer holds (automations are archived)",
    ),
]
Url = Annotated[str | None, typer.Option("--url", help="plan against this server's API")]
Key = Annotated[
    str | None, typer.Option("--key", envvar="CONVEYOR_KEY", help="its admin key (--url)")
]
SYMBOLS = {
    "create": "[green]+[/]",
    "update": "[yellow]~[/]",
    "delete": "[red]-[/]",
    "unchanged": "[dim]=[/]",
    "error": "[red]✗[/]",
}


def read_folder(folder: Path) -> list[Resource]:
    """Every resource of the folder: `KIND_FOLDER/*.yaml|*.yml|*.json`, one line per error."""
    from conveyor.domain.workspace_code import FOLDERS, resources_of

    resources: list[Resource] = []
    for name, kind in FOLDERS.items():
        sub = folder / name
        if not sub.is_dir():
            continue
        for file in sorted(sub.iterdir()):
            if file.suffix not in (".yaml", ".yml", ".json") or not file.is_file():
                continue
            source = f"{name}/{file.name}"
            try:
                data = yaml.safe_load(file.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
                _fail(f"{where}: {getattr(exc, 'problem', None) or exc}")
            except (OSError, UnicodeDecodeError) as exc:
                _fail(f"{source}: {exc}")
            # As JSON has it (YAML's dates become ISO text): the same definitions locally and
            # over --url, and as the API would store them.
            data = json.loads(json.dumps(data, default=_iso))
            try:
                resources.extend(resources_of(kind, data, source))
            except ConveyorError as exc:
                _fail(f"{exc.field or source}: {exc.detail}")
    if not resources:
        _fail(f"{folder}: no resources (sub-folders: {', '.join(FOLDERS)})")
    return resources


def _iso(value: Any) -> str:
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _local(folder: Path, workspace: str | None, prune: bool, commit: bool) -> dict[str, Any]:
    resources = read_folder(folder)
    conveyor = _open()
    try:
        ws = _workspace(conveyor, workspace)
        code = conveyor.code
        plan = (
            code.apply(ws, resources, prune=prune)
            if commit
            else code.plan(ws, resources, prune=prune)
        )
    except ConveyorError as exc:
        field = getattr(exc, "field", None)
        _fail(f"{field + ': ' if field else ''}{exc.detail}")
    return plan.as_dict()


def _remote(folder: Path, url: str, key: str | None, prune: bool, commit: bool) -> dict[str, Any]:
    if not key:
        _fail("--url needs --key (or CONVEYOR_KEY): an admin key of that workspace")
    resources = read_folder(folder)
    body = {
        "prune": prune,
        "resources": [
            {"kind": r.kind, "key": r.key, "source": r.source, "definition": r.definition}
            for r in resources
        ],
    }
    path = "/workspace/apply" if commit else "/workspace/plan"
    import httpx  # only here: with httpcore, h11 and pygments, ~0.2 s for every command

    try:
        response = httpx.post(
            url.rstrip("/") + path,
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=300,
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {url}: {exc}")
    answer = response.json() if response.headers.get("content-type", "").endswith("json") else {}
    if "plan" in answer:  # a refused apply: the plan says why
        return answer["plan"]
    if response.status_code != 200:
        _fail(f"{url} answered {response.status_code}: {answer.get('detail', response.text)}")
    return answer


def _offline(folder: Path, prune: bool) -> dict[str, Any]:
    """The folder planned into a fresh, empty workspace in a throw-away database."""
    from conveyor.settings import Settings

    resources = read_folder(folder)
    with tempfile.TemporaryDirectory(prefix="conveyor-validate-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{os.path.join(tmp, 'validate.db')}",
            data_dir=Path(tmp),
        )
        conveyor = _open(settings)
        try:
            conveyor.workspaces.ensure_default(settings.default_workspace)
            ws = conveyor.workspaces.get(settings.default_workspace)
            plan = conveyor.code.plan(ws, resources, prune=prune)
        finally:
            conveyor.close()
    return plan.as_dict()


def show(plan: dict[str, Any], *, as_json: bool, verb: str) -> None:
    if as_json or out.json:
        out.print_json(data=json.loads(json.dumps(plan, default=str)))
    else:
        for change in plan["changes"]:
            where = f" ({change['source']})" if change["source"] else ""
            line = f"{SYMBOLS[change['action']]} {change['kind']}/{escape(change['key'])}{where}"
            if change["drifted"]:
                line += "  [magenta]changed in the workspace since the last apply[/]"
            if change["action"] == "error":
                field = f"{change['field']}: " if change["field"] else ""
                line += f"\n    [red]{escape(field + (change['error'] or ''))}[/]"
            out.print(line, highlight=False)
            if change["diff"] and change["action"] in ("update", "delete"):
                from rich.syntax import Syntax  # and Pygments: only when there is a diff

                out.print(
                    Syntax(change["diff"], "diff", theme="ansi_dark", background_color="default")
                )
        c = plan["counts"]
        summary = (
            f"{c['create']} to create, {c['update']} to update, {c['delete']} to delete, "
            f"{c['unchanged']} unchanged"
        )
        if c["error"]:
            out.print(f"[red]{c['error']} error(s): nothing was {verb}.[/] ({summary})")
        elif verb == "applied" and plan["applied"]:
            out.print(f"Applied: {summary}.", highlight=False)
        else:
            out.print(f"Plan: {summary}.", highlight=False)
    if plan["counts"]["error"]:
        raise typer.Exit(1)


@app.command("plan")
def plan_command(
    folder: Folder,
    workspace: WorkspaceOpt = None,
    prune: Prune = False,
    url: Url = None,
    key: Key = None,
    as_json: Json = False,
) -> None:
    """What `apply DIR` would change, with diffs and drift; changes nothing."""
    plan = (
        _remote(folder, url, key, prune, False) if url else _local(folder, workspace, prune, False)
    )
    show(plan, as_json=as_json, verb="applied")


@app.command("apply")
def apply_command(
    folder: Folder,
    workspace: WorkspaceOpt = None,
    prune: Prune = False,
    url: Url = None,
    key: Key = None,
    as_json: Json = False,
) -> None:
    """Put the folder in place: all of it, or nothing if anything is wrong."""
    plan = _remote(folder, url, key, prune, True) if url else _local(folder, workspace, prune, True)
    show(plan, as_json=as_json, verb="applied")


@app.command("validate")
def validate_command(folder: Folder, as_json: Json = False) -> None:
    """Check a folder with no database: every file's schema and every reference within the
    folder (templates, segments, lists, fields, automations, pipelines, scores)."""
    plan = _offline(folder, prune=False)
    show(plan, as_json=as_json, verb="applied")
    if not (as_json or out.json):
        out.print(f"{folder}: valid ({len(plan['changes'])} resources)", highlight=False)
