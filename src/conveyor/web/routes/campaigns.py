"""Campaigns in the panel: the list with each one's state and figures, the composer (audience of
lists, segments and tags minus exclusions, with a live count; template; schedule now, at a
moment or at a local time in each contact's timezone; throttle; A/B sample) that saves a draft
with the campaign service's `apply` — the same as `POST /campaigns` — and the lifecycle buttons
(schedule, unschedule, pause, resume, cancel). A form with a bad value comes back with the
error on its field, and nothing is saved."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from conveyor.domain.errors import ConveyorError, InvalidInput, NotFound
from conveyor.domain.permissions import Action, can
from conveyor.services.campaigns import CampaignInfo
from conveyor.services.signin import SignedIn
from conveyor.web.json_calls import answer, json_call, problem
from conveyor.web.pages import base, redirect, render
from conveyor.web.session import acting, conveyor_of, signed_in

router = APIRouter(prefix="/campaigns")
Member = Annotated[SignedIn, Depends(signed_in)]
MOVES = {
    "schedule": ("Schedule", "scheduled"),
    "unschedule": ("Back to draft", "back to a draft"),
    "pause": ("Pause", "paused"),
    "resume": ("Resume", "sending again"),
    "cancel": ("Cancel campaign", "cancelled"),
}
# Which buttons a campaign in each state shows (the service checks the move all the same).
BUTTONS = {
    "draft": ("schedule", "cancel"),
    "scheduled": ("unschedule", "cancel"),
    "sending": ("pause", "cancel"),
    "paused": ("resume", "cancel"),
}


@router.get("")
async def campaign_list(request: Request, member: Member) -> Response:
    campaigns = conveyor_of(request).campaigns
    found = campaigns.all(member.workspace)
    rows = [(c, campaigns.report(member.workspace, c.key)) for c in found]
    return render(
        request, "campaigns/list.html", member, section="campaigns", title="Campaigns", rows=rows
    )


@router.get("/new")
async def new_campaign(request: Request, member: Member) -> Response:
    return _composer(request, member, None, {})


@router.post("/new")
async def create_campaign(request: Request) -> Response:
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    return await _save(request, member, None)


@router.post("/count.json")
async def count(request: Request) -> Response:
    """The composer's live count: how many contacts the audience holds now."""
    try:
        member, body = await json_call(request, Action.VIEW)
        channel = body.get("channel") if body.get("channel") in ("email", "sms") else None
        found = conveyor_of(request).campaigns.count(
            member.workspace, audience=body.get("audience"), channel=channel
        )
    except ConveyorError as exc:
        return problem(exc)
    return answer({"count": found})


@router.get("/{key}")
async def campaign_page(request: Request, member: Member, key: str) -> Response:
    campaigns = conveyor_of(request).campaigns
    campaign = campaigns.get(member.workspace, key)
    return render(
        request,
        "campaigns/campaign.html",
        member,
        section="campaigns",
        title=campaign.name,
        campaign=campaign,
        report=campaigns.report(member.workspace, key),
        count=campaigns.count(member.workspace, key=key),
        buttons=[(m, MOVES[m][0]) for m in BUTTONS.get(campaign.status, ())],
        schedule=describe_schedule(campaign, member.workspace.settings.get("timezone", "UTC")),
    )


@router.get("/{key}/edit")
async def edit_campaign(request: Request, member: Member, key: str) -> Response:
    campaign = conveyor_of(request).campaigns.get(member.workspace, key)
    if campaign.status != "draft":
        return redirect(
            f"{base()}/campaigns/{key}", f"Only a draft can change; this one is {campaign.status}."
        )
    timezone = member.workspace.settings.get("timezone", "UTC")
    return _composer(request, member, campaign, form_of(campaign, timezone))


@router.post("/{key}/edit")
async def change_campaign(request: Request, key: str) -> Response:
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    campaign = conveyor_of(request).campaigns.get(member.workspace, key)
    return await _save(request, member, campaign)


@router.post("/{key}/{move}")
async def lifecycle(request: Request, key: str, move: str) -> Response:
    if move not in MOVES:
        raise NotFound("there is no such page")
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    campaigns = conveyor_of(request).campaigns
    back = f"{base()}/campaigns/{key}"
    try:
        info = getattr(campaigns, move)(member.workspace, key)
    except ConveyorError as exc:
        if exc.status == 404:
            raise
        return redirect(back, exc.detail, failed=True)
    return redirect(back, f"“{info.name}” is {MOVES[move][1]}.")


# --- the composer ----------------------------------------------------------------------------


def _composer(
    request: Request,
    member: SignedIn,
    campaign: CampaignInfo | None,
    form: dict[str, Any],
    errors: dict[str, str] | None = None,
) -> Response:
    conveyor = conveyor_of(request)
    ws = member.workspace
    vocabulary = conveyor.segments.vocabulary(ws)
    return render(
        request,
        "campaigns/composer.html",
        member,
        status=422 if errors else 200,
        section="campaigns",
        title=f"Edit {campaign.name}" if campaign else "New campaign",
        campaign=campaign,
        form=form,
        errors=errors or {},
        templates=conveyor.templates.all(ws),
        lists=vocabulary["lists"],
        segments=vocabulary["segments"],
        tags=vocabulary["tags"],
        timezone=ws.settings.get("timezone", "UTC"),
        may_save=can(member.role, Action.MANAGE_AUTOMATIONS),
    )


async def _save(request: Request, member: SignedIn, campaign: CampaignInfo | None) -> Response:
    form = await request.form()
    given = {k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form}
    flat = {k: (v[0] if len(v) == 1 else v) for k, v in given.items()}
    ws = member.workspace
    try:
        raw = definition(given, ws.settings.get("timezone", "UTC"))
        if campaign is not None and raw["key"] != campaign.key:
            raise InvalidInput("key", "the key of a campaign does not change")
        info, outcome = conveyor_of(request).campaigns.apply(ws, raw)
    except InvalidInput as exc:
        errors = {e.field: e.detail for e in exc.errors}
        return _composer(request, member, campaign, flat | {"_lists": given}, errors)
    except ConveyorError as exc:
        return _composer(request, member, campaign, flat | {"_lists": given}, {"": exc.detail})
    what = {"created": "saved as a draft", "updated": "changed", "unchanged": "unchanged"}
    return redirect(f"{base()}/campaigns/{info.key}", f"“{info.name}” {what[outcome]}.")


def _one(given: dict[str, list[str]], name: str) -> str:
    values = given.get(name) or [""]
    return values[0].strip()


def _names(given: dict[str, list[str]], name: str) -> list[str]:
    """Checked boxes, or one text of comma-separated names."""
    out: list[str] = []
    for value in given.get(name, []):
        out += [part.strip() for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(out))


def definition(given: dict[str, list[str]], timezone: str) -> dict[str, Any]:
    """The composer's form as a campaign definition (the YAML's shape); wrong values raise
    InvalidInput naming the definition's field, as `apply` does for the rest."""
    raw: dict[str, Any] = {
        "key": _one(given, "key"),
        "name": _one(given, "name") or None,
        "channel": _one(given, "channel") or "email",
        "template": _one(given, "template") or None,
        "on_cap": _one(given, "on_cap") or "skip",
    }
    audience: dict[str, Any] = {k: _names(given, k) for k in ("lists", "segments", "tags")}
    exclude = {k: _names(given, f"exclude_{k}") for k in ("lists", "segments", "tags")}
    audience = {k: v for k, v in audience.items() if v}
    if any(exclude.values()):
        audience["exclude"] = {k: v for k, v in exclude.items() if v}
    raw["audience"] = audience
    when = _one(given, "when") or "now"
    if when == "at":
        at = _one(given, "at")
        try:
            moment = datetime.fromisoformat(at).replace(tzinfo=ZoneInfo(timezone))
        except ValueError:
            raise InvalidInput("schedule.at", "a date and time, e.g. 2026-03-03 09:00") from None
        raw["schedule"] = {"at": moment.isoformat()}
    elif when == "local":
        raw["schedule"] = {
            "date": _one(given, "date"),
            "local_time": _one(given, "local_time"),
            "late": _one(given, "late") or "next_day",
        }
    throttle = _one(given, "per_hour")
    if throttle:
        if not throttle.isdigit():
            raise InvalidInput("throttle.per_hour", "a whole number of messages per hour")
        raw["throttle"] = {"per_hour": int(throttle)}
    if _one(given, "ab") == "on":
        sample = _one(given, "sample")
        if not sample.isdigit():
            raise InvalidInput("ab_test.sample", "a percentage of the audience, 2-50")
        raw["ab_test"] = {
            "variants": [v for v in (raw["template"], _one(given, "variant")) if v],
            "sample": int(sample),
            "wait": _one(given, "wait") or "4 hours",
            "metric": _one(given, "metric") or "clicked",
        }
    return {k: v for k, v in raw.items() if v is not None}


def _local(at: str, timezone: str) -> datetime:
    return datetime.fromisoformat(at).astimezone(ZoneInfo(timezone))


def form_of(campaign: CampaignInfo, timezone: str) -> dict[str, Any]:
    """A saved campaign as the composer's form values."""
    audience = campaign.audience
    exclude = audience.get("exclude") or {}
    form: dict[str, Any] = {
        "key": campaign.key,
        "name": campaign.name,
        "channel": campaign.channel,
        "template": campaign.template,
        "on_cap": campaign.on_cap,
        "per_hour": str(campaign.throttle_per_hour or ""),
        "_lists": {
            "lists": audience.get("lists", []),
            "segments": audience.get("segments", []),
            "exclude_lists": exclude.get("lists", []),
            "exclude_segments": exclude.get("segments", []),
        },
        "tags": ", ".join(audience.get("tags", [])),
        "exclude_tags": ", ".join(exclude.get("tags", [])),
        "when": "now",
    }
    schedule = campaign.schedule or {}
    if "at" in schedule:
        form.update(when="at", at=_local(schedule["at"], timezone).strftime("%Y-%m-%dT%H:%M"))
    elif "date" in schedule:
        form.update(
            when="local",
            date=schedule["date"],
            local_time=schedule["local_time"],
            late=schedule.get("late", "next_day"),
        )
    if campaign.ab_test:
        variants = campaign.ab_test["variants"]
        form.update(
            ab="on",
            variant=variants[1] if len(variants) > 1 else "",
            sample=str(campaign.ab_test["sample"]),
            wait=f"{campaign.ab_test['wait'] // 60} minutes",
            metric=campaign.ab_test["metric"],
        )
    return form


def describe_schedule(campaign: CampaignInfo, timezone: str) -> str:
    schedule = campaign.schedule or {}
    if "date" in schedule:
        late = "the next day" if schedule.get("late", "next_day") == "next_day" else "at once"
        return (
            f"{schedule['date']} at {schedule['local_time']} in each contact's own timezone "
            f"(where that time has passed when it starts: {late})"
        )
    if "at" in schedule:
        return f"at {_local(schedule['at'], timezone):%Y-%m-%d %H:%M} ({timezone})"
    return "when scheduled: at once"
