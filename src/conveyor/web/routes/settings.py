"""Settings: channels (the email sender and SMTP server; SMS shown), the workspace's send policy
as YAML, API keys (by prefix; a new one shown once; revoke) and the team (add with a role,
change a role). Everyone signed in reads channels and the policy; admins and owners change
them, and only they see keys and the team. Errors are shown by the field they are about."""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response

from conveyor.domain.crm import ROLES
from conveyor.domain.errors import ConveyorError, InvalidInput
from conveyor.domain.permissions import Action, can
from conveyor.services.signin import SignedIn
from conveyor.web.pages import base, redirect, render
from conveyor.web.session import acting, conveyor_of, signed_in

router = APIRouter(prefix="/settings")
Member = Annotated[SignedIn, Depends(signed_in)]
Id = Annotated[int, Path(ge=1, le=2**62)]
EMAIL_FIELDS = ("from", "reply_to", "smtp_url", "unsubscribe_mailto")


def _page(request: Request, member: SignedIn, *, status: int = 200, **given: Any) -> Response:
    conveyor = conveyor_of(request)
    ws = conveyor.workspaces.get(member.workspace.name)  # the settings as saved just now
    policy = ws.settings.get("send_policy")
    context: dict[str, Any] = {
        "channels": conveyor.channels.describe(ws),
        "policy_yaml": yaml.safe_dump(policy, sort_keys=False) if policy else "",
        "errors": {},
        "roles": ROLES,
    }
    if can(member.role, Action.MANAGE_SETTINGS):
        context["keys"] = conveyor.workspaces.keys(ws)
    if can(member.role, Action.MANAGE_TEAM):
        context["team"] = conveyor.crm.members(ws)
    context.update(given)
    return render(
        request,
        "settings/index.html",
        member,
        status=status,
        section="settings",
        title="Settings",
        **context,
    )


@router.get("")
async def settings_page(request: Request, member: Member) -> Response:
    return _page(request, member)


@router.post("/channels/email")
async def save_email(request: Request) -> Response:
    member = await acting(request, Action.MANAGE_SETTINGS)
    form = await request.form()
    given = {k: str(form.get(k, "")).strip() for k in EMAIL_FIELDS}
    try:
        conveyor_of(request).channels.configure(
            member.workspace, "email", {k: v for k, v in given.items() if v}
        )
    except InvalidInput as exc:
        return _page(
            request, member, status=422, errors={f"email.{exc.field}": exc.reason}, email=given
        )
    return redirect(f"{base()}/settings#channels", "Email settings saved.")


@router.post("/policy")
async def save_policy(request: Request, policy: Annotated[str, Form()] = "") -> Response:
    member = await acting(request, Action.MANAGE_SETTINGS)
    try:
        try:
            raw = yaml.safe_load(policy) if policy.strip() else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise InvalidInput("", f"not YAML{where}: {getattr(exc, 'problem', exc)}") from None
        conveyor_of(request).policies.set_workspace_policy(member.workspace, raw)
    except InvalidInput as exc:
        return _page(request, member, status=422, errors={"policy": str(exc)}, policy_yaml=policy)
    return redirect(f"{base()}/settings#policy", "Send policy saved.")


@router.post("/keys")
async def create_key(
    request: Request,
    kind: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    member = await acting(request, Action.MANAGE_SETTINGS)
    try:
        made = conveyor_of(request).workspaces.create_key(member.workspace, kind, name or None)
    except InvalidInput as exc:
        return _page(request, member, status=422, errors={f"key.{exc.field}": exc.reason})
    # Shown in this response only (never stored in clear, never in a URL or a cookie).
    return _page(request, member, new_key=made)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: Id) -> Response:
    member = await acting(request, Action.MANAGE_SETTINGS)
    try:
        conveyor_of(request).workspaces.revoke_key(member.workspace, key_id)
    except ConveyorError as exc:
        if exc.status == 404:
            raise
        return redirect(f"{base()}/settings#keys", exc.detail, failed=True)
    return redirect(f"{base()}/settings#keys", f"Key {key_id} is revoked; it no longer works.")


@router.post("/team")
async def add_member(
    request: Request,
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
) -> Response:
    member = await acting(request, Action.MANAGE_TEAM)
    try:
        _may_grant(member, role)
        added = conveyor_of(request).crm.add_member(member.workspace, name, email, role)
    except InvalidInput as exc:
        given = {"name": name, "email": email, "role": role}
        field = exc.field if exc.field in given else "email"
        return _page(
            request, member, status=422, errors={f"team.{field}": exc.reason}, newcomer=given
        )
    except ConveyorError as exc:
        given = {"name": name, "email": email, "role": role}
        return _page(
            request, member, status=exc.status, errors={"team.email": exc.detail}, newcomer=given
        )
    return redirect(
        f"{base()}/settings#team",
        f"{added['email']} is a {added['role']}. To sign in they need a password: "
        f"conveyor user password --email {added['email']}",
    )


@router.post("/team/{member_id}/role")
async def change_role(
    request: Request, member_id: Id, role: Annotated[str, Form()] = ""
) -> Response:
    member = await acting(request, Action.MANAGE_TEAM)
    crm = conveyor_of(request).crm
    back = f"{base()}/settings#team"
    try:
        current = crm.member(member.workspace, member_id)
        if member_id == member.member_id:
            raise InvalidInput("role", "you cannot change your own role; ask another admin")
        _may_grant(member, role)
        if current["role"] == "owner" and member.role != "owner":
            raise InvalidInput("role", "only an owner changes an owner's role")
        changed = crm.change_member(member.workspace, member_id, {"role": role})
    except ConveyorError as exc:
        if exc.status == 404:
            raise
        return redirect(back, exc.detail, failed=True)
    return redirect(back, f"{changed['email']} is now a {changed['role']}.")


def _may_grant(member: SignedIn, role: str) -> None:
    if role not in ROLES:
        raise InvalidInput("role", f"one of {', '.join(ROLES)}")
    if role == "owner" and member.role != "owner":
        raise InvalidInput("role", "only an owner makes another owner")
