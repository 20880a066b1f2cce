"""`conveyor` commands: serve, worker, db, workspace, key, contacts, segment, automation
(simulate, forecast, try: see cli/simulate.py), template, channel, policy, scoring, backup and
restore (cli/ops.py), and the sales side's member, pipeline, deal and task (cli/crm.py)."""

from __future__ import annotations

import enum
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from conveyor import __version__, logs
from conveyor.cli import live_edits, ops, simulate
from conveyor.cli.output import ERRORS, out, take_json_flag
from conveyor.domain.errors import ConveyorError, NotFound

# Conveyor itself (services, store, SQLAlchemy: ~1 s of CPU) is imported by the commands that
# open it, in _open: `conveyor --version` and `--help` do without, and Typer builds every
# command's options from these annotations whatever the command line says.
if TYPE_CHECKING:
    from rich.progress import Progress

    from conveyor.bootstrap import Conveyor
    from conveyor.settings import Settings

app = typer.Typer(help="Conveyor: self-hosted marketing automation.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspaces (tenants).", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
contacts_app = typer.Typer(help="Contacts.", no_args_is_help=True)
segment_app = typer.Typer(help="Segments: saved conditions.", no_args_is_help=True)
automation_app = typer.Typer(help="Automations as code.", no_args_is_help=True)
template_app = typer.Typer(help="Message templates as code.", no_args_is_help=True)
channel_app = typer.Typer(help="Channel settings: senders and providers.", no_args_is_help=True)
policy_app = typer.Typer(help="Send policies: caps, send windows, repeats.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(workspace_app, name="workspace")
app.add_typer(key_app, name="key")
app.add_typer(contacts_app, name="contacts")
app.add_typer(segment_app, name="segment")
app.add_typer(automation_app, name="automation")
app.add_typer(template_app, name="template")
app.add_typer(channel_app, name="channel")
scoring_app = typer.Typer(help="Lead scoring: the scoring model.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(scoring_app, name="scoring")
app.command()(ops.backup)
app.command()(ops.restore)

err = ERRORS
WorkspaceOpt = Annotated[
    str | None, typer.Option("--workspace", "-w", help="default: the default workspace")
]


def _open(settings: Settings | None = None) -> Conveyor:
    """Conveyor on the configured database, migrated; one clear line if it cannot be reached."""
    from conveyor.bootstrap import bootstrap
    from conveyor.settings import Settings
    from conveyor.store.database import connection_problem, shown_url

    settings = settings or Settings()
    try:
        conveyor = bootstrap(settings)
        conveyor.upgrade_schema()
    except Exception as exc:
        reason = connection_problem(exc)
        if reason is None:
            raise
        _fail(f"cannot use the database {shown_url(settings.database_url)}: {reason}")
    return conveyor


def _version(value: bool) -> None:
    if value:
        out.print(f"conveyor {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Conveyor: self-hosted marketing automation."""


def _fail(message: str, code: int = 1) -> None:
    out.error(message)
    raise typer.Exit(code)


def _workspace(conveyor: Conveyor, name: str | None):  # type: ignore[no-untyped-def]
    """The named (or default) workspace; a message, not a traceback, when there is none (e.g.
    the default one before the first `serve` created it)."""
    wanted = name or conveyor.settings.default_workspace
    try:
        return conveyor.workspaces.get(wanted)
    except NotFound:
        _fail(
            f"no workspace named '{wanted}': `conveyor serve` creates the default one on its first"
            f" start, or `conveyor workspace create {wanted}`"
        )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    workers: Annotated[
        int, typer.Option(min=0, help="worker processes to run beside the API (>1: PostgreSQL)")
    ] = 1,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="the API alone; run `conveyor worker` elsewhere")
    ] = False,
    api_workers: Annotated[
        int, typer.Option(min=1, help="API processes sharing the port (>1: PostgreSQL)")
    ] = 1,
) -> None:
    """Run the API (migrating the database first) and, in worker processes it starts, restarts
    and stops, the engine and delivery. Creates the default workspace on first start."""
    import uvicorn

    from conveyor.api.app import create_app
    from conveyor.api.headers import uvicorn_options
    from conveyor.settings import Settings
    from conveyor.worker.supervisor import Supervisor

    settings = Settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    workers = 0 if no_worker else workers
    conveyor = _open(settings)
    if workers > 1 and conveyor.store.db.is_sqlite:
        _fail("SQLite has one writer at a time: more than one worker process needs PostgreSQL")
    if api_workers > 1 and conveyor.store.db.is_sqlite:
        _fail("SQLite has one writer at a time: more than one API process needs PostgreSQL")
    if workers > 1 and settings.worker_metrics_port:
        _fail("one CONVEYOR_WORKER_METRICS_PORT cannot serve several workers: run them yourself")
    _log_to_stderr()
    new_key = conveyor.workspaces.ensure_default(settings.default_workspace)
    url = settings.base_url()
    out.print(f"Conveyor {url}  (API docs: {url}/docs)", highlight=False)
    out.print(
        f"Database: {conveyor.store.db.engine.url.render_as_string(hide_password=True)}",
        highlight=False,
    )
    if not workers:
        out.print("No worker: run `conveyor worker` for triggers, runs and delivery.")
    if new_key is not None and settings.bootstrap_key_file:
        ops.write_secret(settings.bootstrap_key_file, new_key.secret)
        out.print(
            f"Created workspace '{new_key.workspace}'. Its admin API key is in "
            f"{settings.bootstrap_key_file} (readable by this user only)."
        )
    elif new_key is not None:
        out.print(
            f"Created workspace '{new_key.workspace}'. Its admin API key, shown only this once:"
        )
        out.print(f"  {new_key.secret}", highlight=False)
    _print_setup_link(conveyor, settings)
    sys.stdout.flush()
    # The worker builds tracking and unsubscribe links from the same host and port.
    env = {**os.environ, "CONVEYOR_HOST": settings.host, "CONVEYOR_PORT": str(settings.port)}
    command = [sys.executable, "-m", "conveyor.cli.main", "worker", "--parent", str(os.getpid())]
    supervisor = Supervisor(command, workers, env=env)
    # uvicorn re-raises SIGTERM after its graceful shutdown; exit through `finally` instead of
    # dying on it, so the workers are stopped rather than left to notice serve is gone.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": False,
        "log_config": None,  # uvicorn's lines go through Conveyor's handler (logs.configure)
        **uvicorn_options(settings.max_header_bytes, settings.max_header_fields),
    }
    try:
        supervisor.start()
        if api_workers > 1:
            # Each process builds its own app from the same settings (api/serving.py), with its
            # own group writer: on PostgreSQL they write side by side.
            from conveyor.api import serving

            os.environ.update(env)
            conveyor.close()
            common["http"] = serving.protocol_option()
            uvicorn.run(
                f"{serving.__name__}:app",
                factory=True,
                workers=api_workers,
                # uvicorn kills a child that does not answer its ping within this many seconds
                # (default 5) and starts another: on a busy machine, importing and building the
                # app took longer, so every child was killed before it served (measured at load
                # 20: none came up in 2 minutes). A hung child is still replaced, just later.
                timeout_worker_healthcheck=serving.WORKER_HEALTHCHECK_SECONDS,
                **common,
            )
        else:
            from conveyor.api.serving import settle_heap

            app = create_app(conveyor)
            settle_heap()
            uvicorn.run(app, **common)
    finally:
        supervisor.stop()


def _print_setup_link(conveyor: Conveyor, settings: Settings) -> None:
    """While no member can sign in to the panel: a one-time link that creates the first owner
    (valid a day; a new one at each start until someone has a password)."""
    try:
        workspace = conveyor.workspaces.get(settings.default_workspace)
    except ConveyorError:  # the default workspace was renamed away: the oldest one
        workspace = min(conveyor.workspaces.all(), key=lambda w: w.id, default=None)
        if workspace is None:
            return
    token = conveyor.signin.setup_link_token(workspace)
    if token is None:
        out.print(f"Panel: {settings.base_url()}/app", highlight=False)
        return
    out.print("No one can sign in to the panel yet. Create the first owner here (works once):")
    out.print(f"  {settings.base_url()}/app/setup?token={token}", highlight=False)
    out.print("or on this machine: conveyor user create --email YOU --role admin", highlight=False)


def _exit_on_signal(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _log_to_stderr() -> None:
    logs.configure()  # JSON lines when stderr is not a terminal


class WorkerRole(enum.StrEnum):
    """The choices of `worker --role`: conveyor.worker.loop.Role's values (a test holds them
    equal), named here so that building the command line does not import the worker."""

    ALL = "all"
    ENGINE = "engine"
    DELIVERY = "delivery"


@app.command()
def worker(
    role: Annotated[
        WorkerRole, typer.Option(help="all: the engine and delivery; or only one of them")
    ] = WorkerRole.ALL,
    parent: Annotated[
        int | None, typer.Option(hidden=True, help="stop when this process (serve) is gone")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="serve this worker's Prometheus metrics on this port (CONVEYOR_HOST)"),
    ] = None,
) -> None:
    """Run the background work: the engine (triggers, runs, segment membership, date and segment
    sweeps) and delivery (the outbox). Start as many as you like on PostgreSQL; they share the
    work without doing a step twice. SIGTERM or Ctrl-C stops it after the current transaction."""
    from conveyor.worker.loop import Role
    from conveyor.worker.process import run_worker

    _log_to_stderr()
    conveyor = _open()
    port = metrics_port or conveyor.settings.worker_metrics_port
    run_worker(
        conveyor,
        Role(role.value),
        parent=parent,
        metrics=(conveyor.settings.host, port) if port else None,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all schema migrations."""
    from conveyor.bootstrap import bootstrap
    from conveyor.settings import Settings
    from conveyor.store import migrate

    conveyor = bootstrap(Settings())
    conveyor.upgrade_schema()
    out.print(f"schema at revision {migrate.current_revision(conveyor.store.db.engine)}")


@workspace_app.command("create")
def workspace_create(name: str) -> None:
    """Create a workspace and print its first admin key."""
    conveyor = _open()
    try:
        workspace, key = conveyor.workspaces.create(name)
    except ConveyorError as exc:
        _fail(exc.detail)
    if out.json:
        out.print_json(data={"workspace": workspace.name, "admin_key": key.secret})
        return
    out.print(f"Created workspace '{workspace.name}'. Admin key (shown once):")
    out.print(key.secret, highlight=False)


@workspace_app.command("list")
def workspace_list() -> None:
    conveyor = _open()
    for ws in conveyor.workspaces.all():
        out.print(ws.name, highlight=False)


@key_app.command("create")
def key_create(
    workspace: WorkspaceOpt = None,
    kind: Annotated[str, typer.Option(help="admin or write")] = "admin",
    name: Annotated[str | None, typer.Option(help="a label to recognise the key")] = None,
) -> None:
    """Create an API key and print it (only now; it is stored hashed)."""
    conveyor = _open()
    try:
        key = conveyor.workspaces.create_key(_workspace(conveyor, workspace), kind, name)
    except ConveyorError as exc:
        _fail(exc.detail)
    if out.json:
        data = {"id": key.id, "kind": key.kind, "workspace": key.workspace, "key": key.secret}
        out.print_json(data=data)
        return
    out.print(key.secret, highlight=False)
    err.print(f"{key.kind} key {key.id} for workspace '{key.workspace}'", highlight=False)


@key_app.command("list")
def key_list(workspace: WorkspaceOpt = None) -> None:
    conveyor = _open()
    try:
        keys = conveyor.workspaces.keys(_workspace(conveyor, workspace))
    except ConveyorError as exc:
        _fail(exc.detail)
    table = Table("id", "kind", "name", "prefix", "created", "revoked")
    for k in keys:
        table.add_row(
            str(k.id),
            k.kind,
            k.name,
            k.prefix + "…",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    out.print(table)


@key_app.command("revoke")
def key_revoke(key_id: int, workspace: WorkspaceOpt = None) -> None:
    conveyor = _open()
    try:
        conveyor.workspaces.revoke_key(_workspace(conveyor, workspace), key_id)
    except ConveyorError as exc:
        _fail(exc.detail)
    out.print(f"revoked key {key_id}")


@contacts_app.command("import")
def contacts_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    list_key: Annotated[
        str | None, typer.Option("--list", help="subscribe every row (created if missing)")
    ] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="COLUMN=field, repeatable")
    ] = None,
    status: Annotated[
        str, typer.Option(help="subscription status to set with --list")
    ] = "subscribed",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report what would change; write nothing")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import contacts from a CSV file (`,` `;` tab or `|` separated; Mailchimp, ActiveCampaign
    and HubSpot exports as they are). Bad rows are reported with their line number."""
    from conveyor.services.imports import parse_mapping

    conveyor = _open()
    try:
        ws = _workspace(conveyor, workspace)
        columns = parse_mapping(mapping or [])
        with file.open(encoding="utf-8-sig", newline="") as handle:
            total = max(sum(1 for _ in handle) - 1, 0)
        with (
            _progress("importing") as bar,
            file.open(encoding="utf-8-sig", newline="") as handle,
        ):
            task = bar.add_task("import", total=total)
            report = conveyor.imports.run(
                ws,
                handle,
                mapping=columns,
                list_key=list_key,
                status=status,
                progress=lambda n: bar.advance(task, n),
                dry_run=dry_run,
            )
    except UnicodeDecodeError:
        _fail(f"{file}: not UTF-8 text; save the CSV as UTF-8")
    except ConveyorError as exc:
        _fail(f"{file}: {exc.detail}")
    if report.list_created:
        out.print(f"created list '{list_key}'")
    out.print(
        ("dry run, nothing written: " if dry_run else "")
        + f"{report.rows} rows: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {len(report.errors)} failed",
        highlight=False,
    )
    if report.ignored_columns:
        out.print(
            "ignored columns (map them with --map COLUMN=field): "
            + ", ".join(report.ignored_columns),
            highlight=False,
        )
    for error in report.errors:
        err.print(f"{file}:{error.line}: {error.field}: {error.detail}", highlight=False)
    if report.errors:
        raise typer.Exit(2)


@contacts_app.command("export")
def contacts_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="a file (default: standard output)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or ndjson")] = "csv",
    workspace: WorkspaceOpt = None,
) -> None:
    """Every contact with its fields, tags, list statuses, score and created_at; the CSV imports
    back unchanged."""
    conveyor = _open()
    try:
        chunks = conveyor.contacts.export(_workspace(conveyor, workspace), fmt)
        if output is None:
            for chunk in chunks:
                sys.stdout.write(chunk)
        else:
            with output.open("w", encoding="utf-8", newline="") as handle:
                for chunk in chunks:
                    handle.write(chunk)
    except ConveyorError as exc:
        _fail(exc.detail)


def _progress(label: str) -> Progress:
    """A progress bar on stderr that disappears when done (rich.progress is imported here:
    most commands show none)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err, transient=True)


def _read_mapping(file: Path, expected: str) -> dict:  # type: ignore[type-arg]
    """A YAML or JSON file holding a mapping; errors name the file and the line."""
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        _fail(f"{file}{where}: not valid YAML/JSON: {getattr(exc, 'problem', exc)}")
    if not isinstance(data, dict):
        _fail(f"{file}: expected {expected}")
    return data


def _definition(file: Path) -> dict:  # type: ignore[type-arg]
    """A segment file: {key, name, condition} or a bare condition."""
    data = _read_mapping(file, "a mapping with a condition")
    return data if "condition" in data else {"condition": data}


@segment_app.command("count")
def segment_count(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    workspace: WorkspaceOpt = None,
) -> None:
    """Count who meets the condition in FILE (YAML or JSON), without saving it."""
    conveyor = _open()
    definition = _definition(file)
    try:
        count = conveyor.segments.count(
            _workspace(conveyor, workspace), raw=definition["condition"]
        )
    except ConveyorError as exc:
        _fail(f"{file}: {exc.detail}")
    out.print(count)


@segment_app.command("apply")
def segment_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    workspace: WorkspaceOpt = None,
) -> None:
    """Create or update the segment defined in FILE ({key, name, condition})."""
    conveyor = _open()
    definition = _definition(file)
    key = definition.get("key")
    if not isinstance(key, str):
        _fail(f"{file}: needs a 'key' to save the segment under")
    try:
        ws = _workspace(conveyor, workspace)
        exists = any(s.key == key for s in conveyor.segments.all(ws))
        segment = conveyor.segments.save(
            ws, key, definition.get("name"), definition["condition"], create=not exists
        )
        count = conveyor.segments.count(ws, key=key)
    except ConveyorError as exc:
        _fail(f"{file}: {exc.detail}")
    out.print(f"{'updated' if exists else 'created'} segment '{segment.key}': {count} members")


@segment_app.command("list")
def segment_list(workspace: WorkspaceOpt = None) -> None:
    conveyor = _open()
    try:
        ws = _workspace(conveyor, workspace)
        table = Table("key", "name", "members", "time-based")
        for s in conveyor.segments.all(ws):
            table.add_row(
                s.key,
                s.name,
                str(conveyor.segments.count(ws, key=s.key)),
                "yes" if s.time_based else "",
            )
    except ConveyorError as exc:
        _fail(exc.detail)
    out.print(table)


def _load(file: Path) -> dict:  # type: ignore[type-arg]
    return _read_mapping(file, "an automation (a mapping with key, triggers and nodes)")


AutomationFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


def _refuse_missing(conveyor: Conveyor, ws, file: Path) -> None:  # type: ignore[no-untyped-def]
    """A template, list, segment or automation the file names and the workspace lacks."""
    for path, problem in conveyor.code.missing(ws, _load(file), in_folder=False):
        _fail(f"{file}: {path}: {problem}")


@automation_app.command("validate")
def automation_validate(file: AutomationFile, workspace: WorkspaceOpt = None) -> None:
    """Check an automation file against the workspace (fields, lists, segments)."""
    conveyor = _open()
    try:
        ws = _workspace(conveyor, workspace)
        automation = conveyor.automations.validate(ws, _load(file))
        _refuse_missing(conveyor, ws, file)
    except ConveyorError as exc:
        _fail(f"{file}: {exc.detail}")
    out.print(f"{file}: valid ({len(automation.nodes)} nodes, {len(automation.triggers)} triggers)")


@automation_app.command("apply")
def automation_apply(
    file: AutomationFile,
    workspace: WorkspaceOpt = None,
    activate: Annotated[bool, typer.Option(help="make it active right away")] = False,
    move: live_edits.MoveOpt = None,
) -> None:
    """Create the automation, or add a new version when the file changed (contacts inside
    stay on their version unless a --move takes them to a node of the new one)."""
    conveyor = _open()
    try:
        ws = _workspace(conveyor, workspace)
        conveyor.automations.validate(ws, _load(file))
        _refuse_missing(conveyor, ws, file)
        if move:
            info, result = live_edits.publish(conveyor, ws, _load(file), move)
        else:
            info, result = conveyor.automations.apply(ws, _load(file))
        if activate and info.status != "active":
            info = conveyor.automations.set_status(ws, info.key, "active")
    except ConveyorError as exc:
        _fail(f"{file}: {exc.detail}")
    out.print(f"{info.key}: {result} (version {info.version}, {info.status})")


@automation_app.command("list")
def automation_list(workspace: WorkspaceOpt = None) -> None:
    conveyor = _open()
    try:
        items = conveyor.automations.all(_workspace(conveyor, workspace))
    except ConveyorError as exc:
        _fail(exc.detail)
    table = Table("key", "name", "status", "version")
    for a in items:
        table.add_row(a.key, a.name, a.status, str(a.version))
    out.print(table)


@automation_app.command("export")
def automation_export(key: str, workspace: WorkspaceOpt = None) -> None:
    """Print the newest version's definition as YAML."""
    import yaml

    conveyor = _open()
    try:
        info = conveyor.automations.get(_workspace(conveyor, workspace), key)
    except ConveyorError as exc:
        _fail(exc.detail)
    out.print(yaml.safe_dump(info.definition, sort_keys=False), end="", highlight=False)


@automation_app.command("status")
def automation_status(key: str, status: str, workspace: WorkspaceOpt = None) -> None:
    """Set an automation's status: active, paused or archived."""
    conveyor = _open()
    try:
        info = conveyor.automations.set_status(_workspace(conveyor, workspace), key, status)
    except ConveyorError as exc:
        _fail(exc.detail)
    out.print(f"{info.key}: {info.status}")


automation_app.command("positions")(live_edits.positions)
automation_app.command("simulate")(simulate.simulate)
automation_app.command("forecast")(simulate.forecast)
automation_app.command("try")(simulate.try_contact)


@template_app.command("apply")
def template_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    workspace: WorkspaceOpt = None,
) -> None:
    """Create or update the templates in FILE: one {key, channel, name?, content} or a list."""
    import yaml

    conveyor = _open()
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        _fail(f"{file}{f':{mark.line + 1}' if mark else ''}: not valid YAML/JSON")
    items = data if isinstance(data, list) else [data]
    ws = _workspace(conveyor, workspace)
    failed = False
    for i, item in enumerate(items):
        where = f"{file}[{i}]" if isinstance(data, list) else str(file)
        if not isinstance(item, dict):
            err.print(f"{where}: a template is a mapping with key, channel and content")
            failed = True
            continue
        try:
            info, result = conveyor.templates.save(
                ws, item.get("key"), item.get("channel"), item.get("content"), item.get("name")
            )
        except ConveyorError as exc:
            err.print(f"[red]error:[/red] {where} ({item.get('key')}): {exc.detail}")
            failed = True
            continue
        out.print(f"{info.key}: {result} (version {info.version})")
    if failed:
        raise typer.Exit(2)


@template_app.command("list")
def template_list(workspace: WorkspaceOpt = None) -> None:
    conveyor = _open()
    table = Table("key", "channel", "name", "version")
    for t in conveyor.templates.all(_workspace(conveyor, workspace)):
        table.add_row(t.key, t.channel, t.name, str(t.version))
    out.print(table)


@channel_app.command("email")
def channel_email(
    sender: Annotated[str, typer.Option("--from", help='e.g. "Acme <news@acme.example>"')],
    smtp_url: Annotated[
        str | None, typer.Option(help="smtp://user:pass@host:587?security=starttls")
    ] = None,
    reply_to: Annotated[str | None, typer.Option()] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Set the workspace's sender and SMTP server (default: CONVEYOR_SMTP_URL)."""
    conveyor = _open()
    settings = {"from": sender, "smtp_url": smtp_url, "reply_to": reply_to}
    try:
        ws = conveyor.channels.configure(
            _workspace(conveyor, workspace), "email", {k: v for k, v in settings.items() if v}
        )
    except ConveyorError as exc:
        _fail(exc.detail)
    email = conveyor.channels.describe(ws)["email"]
    out.print(f"email: from {email['effective_from']}, provider {email['provider'] or 'none'}")


@policy_app.command("apply")
def policy_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    workspace: WorkspaceOpt = None,
) -> None:
    """Set the workspace's send policy from FILE ({caps, windows, repeat_within})."""
    from conveyor.domain.policies import parse_policy

    conveyor = _open()
    raw = _read_mapping(file, "a send policy (a mapping with caps, windows, repeat_within)")
    try:
        conveyor.policies.set_workspace_policy(_workspace(conveyor, workspace), raw)
    except ConveyorError as exc:
        _fail(f"{file}: {exc.detail}")
    out.print_json(data=parse_policy(raw).as_dict())


def _rescoring(run):  # type: ignore[no-untyped-def]
    """Run `run(progress)` under a progress bar of contacts rescored."""
    with _progress("scoring contacts") as bar:
        task = bar.add_task("score", total=None)
        return run(lambda done, total: bar.update(task, completed=done, total=total))


@scoring_app.command("apply")
def scoring_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    workspace: WorkspaceOpt = None,
) -> None:
    """Set the workspace's scoring model from FILE ({scores: {...}}) and recompute every
    contact's scores from the event log."""
    conveyor = _open()
    raw = _read_mapping(file, "a scoring model (a mapping with scores)")
    try:
        ws = _workspace(conveyor, workspace)
        result = _rescoring(lambda progress: conveyor.scoring.apply(ws, raw, progress))
    except ConveyorError as exc:
        _fail(f"{file}: {exc.detail}")
    out.print(
        f"scoring model version {result['version']}: {result['contacts']} contacts scored",
        highlight=False,
    )


@scoring_app.command("show")
def scoring_show(workspace: WorkspaceOpt = None) -> None:
    """The workspace's scoring model, as YAML."""
    import yaml

    conveyor = _open()
    try:
        model = conveyor.scoring.model(_workspace(conveyor, workspace))
    except ConveyorError as exc:
        _fail(exc.detail)
    out.print(
        f"# version {model['version']}, {model['contacts_scored']} contact scores",
        highlight=False,
    )
    out.print(yaml.safe_dump(model["definition"], sort_keys=False), highlight=False)


@scoring_app.command("recompute")
def scoring_recompute(workspace: WorkspaceOpt = None) -> None:
    """Recompute every contact's scores from the event log with the current model."""
    conveyor = _open()
    try:
        ws = _workspace(conveyor, workspace)
        conveyor.scoring.model(ws)  # a clear error without a model
        scored = _rescoring(lambda progress: conveyor.scoring.recompute(ws, progress))
    except ConveyorError as exc:
        _fail(exc.detail)
    out.print(f"{scored} contacts scored", highlight=False)


# The commands of the sales side, campaigns and reports live in their own modules; they use
# the helpers above.
from conveyor.cli.campaigns import APPS as CAMPAIGN_APPS  # noqa: E402
from conveyor.cli.crm import APPS as CRM_APPS  # noqa: E402
from conveyor.cli.reports import report_app as REPORT_APP  # noqa: E402

for _name, _sub in {**CRM_APPS, **CAMPAIGN_APPS}.items():
    app.add_typer(_sub, name=_name)
from conveyor.cli.deliverability import app as deliverability_app  # noqa: E402

app.add_typer(deliverability_app, name="deliverability")
from conveyor.cli.experiments import app as experiments_app  # noqa: E402

app.add_typer(experiments_app, name="experiments")

# `plan`, `apply` and `validate` of a whole folder (workspace as code) register themselves.
from conveyor.cli import code as _code  # noqa: E402, F401
from conveyor.cli.users import user_app  # noqa: E402

app.add_typer(user_app, name="user")
app.add_typer(REPORT_APP, name="report")


def main() -> None:
    """The `conveyor` command: `--json` anywhere makes its output one JSON document."""
    args, out.json = take_json_flag(sys.argv[1:])
    try:
        app(args=args, prog_name="conveyor")
    finally:
        out.flush()


if __name__ == "__main__":
    main()
