"""`conveyor user`: team members who sign in to the panel (passwords set here or by the setup
link `conveyor serve` prints while no one can sign in).

The helpers (opening the app, failing with a message) are main's, imported when a command runs.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from conveyor.domain.errors import ConveyorError, NotFound

user_app = typer.Typer(
    help="Who signs in to the panel: members with a password.", no_args_is_help=True
)

WorkspaceOpt = Annotated[
    str | None, typer.Option("--workspace", "-w", help="default: the default workspace")
]
EmailOpt = Annotated[str, typer.Option("--email", "-e", help="the member's email address")]
StdinOpt = Annotated[
    bool,
    typer.Option("--password-stdin", help="read the password from standard input (scripts)"),
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt(
        "Password (at least 10 characters)", hide_input=True, confirmation_prompt=True
    )


def _run(workspace: str | None, work, password_stdin: bool):  # type: ignore[no-untyped-def]
    from conveyor.cli import main as cli

    password = _password(password_stdin)
    conveyor = cli._open()
    try:
        return work(conveyor, cli._workspace(conveyor, workspace), password)
    except NotFound as exc:
        hint = "" if workspace else ": start `conveyor serve` once (it creates it) first"
        cli._fail(f"{exc.detail}{hint}")
    except ConveyorError as exc:
        field = getattr(exc, "field", None)
        cli._fail(f"{field + ': ' if field else ''}{getattr(exc, 'reason', exc.detail)}")
    finally:
        conveyor.close()


@user_app.command("create")
def user_create(
    email: EmailOpt,
    role: Annotated[str, typer.Option(help="owner, admin, marketer, sales or viewer")] = "marketer",
    name: Annotated[
        str | None, typer.Option(help="default: the part of the email before @")
    ] = None,
    workspace: WorkspaceOpt = None,
    password_stdin: StdinOpt = False,
) -> None:
    """A member who can sign in to the panel (a member already in the team gets a password
    and this role)."""
    from conveyor.cli.main import out

    member = _run(
        workspace,
        lambda c, ws, pw: (ws, c.signin.create_user(ws, email, role, pw, name=name)),
        password_stdin,
    )
    ws, made = member
    out.print(
        f"{made['email']} can sign in to workspace '{ws.name}' as {made['role']}.",
        highlight=False,
    )


@user_app.command("password")
def user_password(
    email: EmailOpt, workspace: WorkspaceOpt = None, password_stdin: StdinOpt = False
) -> None:
    """Set a member's password; their open sessions end."""
    from conveyor.cli.main import out

    made = _run(workspace, lambda c, ws, pw: c.signin.set_password(ws, email, pw), password_stdin)
    out.print(f"New password for {made['email']}; their sessions ended.", highlight=False)
