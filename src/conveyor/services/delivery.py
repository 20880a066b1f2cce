"""Delivery: drains the outbox. Each round claims due messages under a lease (one short
transaction), prepares them from one read, sends them concurrently through the providers, and
records outcomes with their events and step-log entries as they come, a few per transaction, with
at most `delivery_in_flight` messages sent and not yet recorded at any moment.

Outcomes: sent; skipped (suppressed: an explicit decision, never retried); failed (the provider
or the message itself said never: a hard bounce, a 4xx, no address); retried with exponential
backoff and jitter on transient errors, and dead after `delivery_max_attempts` with the reason
kept (`POST /messages/{id}/retry` sends it again). A worker killed after sending but before
recording leaves the row claimed; when the lease runs out the message is sent again with the
same idempotency key and Message-ID (at-least-once towards providers, never lost): at most
`delivery_in_flight` messages per killed worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from conveyor import telemetry
from conveyor.channels.base import DeliveryError, Email, Receipt, Sms, WebhookCall
from conveyor.channels.guard import AddressGuard
from conveyor.channels.sms import OPTED_OUT, TwilioSms
from conveyor.channels.smtp import SmtpConfig, SmtpProvider
from conveyor.channels.webhook import WebhookSender
from conveyor.clock import Clock
from conveyor.domain.contacts import SubscriptionStatus
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.channel_config import channel_settings, email_setup, webhook_secret
from conveyor.services.contact_writer import ContactWriter
from conveyor.services.contacts import Contacts
from conveyor.services.outgoing import Job, Setup, prepare, render_preview, suppression_keys
from conveyor.services.policies import SendPolicies
from conveyor.services.ratelimits import SharedBucket
from conveyor.services.rendering import RenderError
from conveyor.services.workspaces import workspace_from_row
from conveyor.settings import Settings
from conveyor.store.records import MessageRecord
from conveyor.store.store import Store, Tx

log = logging.getLogger("conveyor.delivery")

BACKOFF_BASE = 60.0  # seconds before the first retry; doubles each time
BACKOFF_CAP = 3600.0  # never wait more than an hour between tries


def backoff(attempt: int, rng: Callable[[], float] = random.random) -> timedelta:
    """Delay before try `attempt + 1`: 1, 2, 4 … minutes, capped at an hour, ±25% jitter so
    that messages deferred together by an outage do not all return in the same second."""
    seconds = min(BACKOFF_BASE * 2 ** max(attempt - 1, 0), BACKOFF_CAP)
    return timedelta(seconds=seconds * (0.75 + 0.5 * rng()))


class Providers:
    """Providers per workspace configuration, built on first use and reused (their pooled
    connections belong to the delivery loop's event loop). `overrides` lets a test or an
    embedding application supply its own provider for a channel."""

    def __init__(
        self,
        settings: Settings,
        overrides: dict[str, Any] | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.overrides = overrides or {}
        self.store = store  # for rate limits shared by every worker
        self._made: dict[tuple[str, ...], Any] = {}

    def email(self, workspace: Workspace) -> Any | None:
        if "email" in self.overrides:
            return self.overrides["email"]
        url, _sender = email_setup(workspace, self.settings)
        if not url:
            return None
        # A server the workspace chose goes through the address guard; the operator's own not.
        chosen = bool(channel_settings(workspace, "email").get("smtp_url"))
        return self._get(("email", url, str(chosen)), lambda: self._smtp(url, chosen))

    def _smtp(self, url: str, chosen: bool) -> SmtpProvider:
        config = SmtpConfig.from_url(url)
        bucket = None
        if config.rate_per_second and self.store is not None:  # one limit for all workers
            account = f"smtp:{config.host}:{config.port}:{config.username or ''}"
            bucket = SharedBucket(self.store, account, config.rate_per_second)
        return SmtpProvider(config, self.guard() if chosen else None, bucket=bucket)

    def sms(self, workspace: Workspace) -> Any | None:
        if "sms" in self.overrides:
            return self.overrides["sms"]
        own = channel_settings(workspace, "sms")
        if not own.get("account_sid"):
            return None
        key = ("sms", *(str(own.get(k)) for k in sorted(own)))
        return self._get(
            key,
            lambda: TwilioSms(
                own["account_sid"],
                own["auth_token"],
                from_number=own.get("from"),
                messaging_service_sid=own.get("messaging_service_sid"),
                **({"base_url": own["base_url"]} if own.get("base_url") else {}),
                guard=self.guard(),
            ),
        )

    def guard(self) -> AddressGuard:
        """The check every connection a workspace setting points somewhere goes through."""
        return AddressGuard(self.settings.webhook_allow_list())

    def webhook(self) -> Any:
        if "webhook" in self.overrides:
            return self.overrides["webhook"]
        return self._get(
            ("webhook",),
            # A few connections per host: httpcore checks every idle one on each request.
            lambda: WebhookSender(allow=self.settings.webhook_allow_list(), max_connections=8),
        )

    def _get(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    async def close(self) -> None:
        made, self._made = self._made, {}
        for provider in made.values():
            await provider.close()


class Delivery:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: Settings,
        contacts: Contacts,
        policies: SendPolicies,
        providers: Providers | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.contacts = contacts
        self.policies = policies
        self.providers = providers or Providers(settings, store=store)
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- running -------------------------------------------------------------------------

    def deliver(self, limit: int | None = None) -> int:
        """One round: claim, prepare, send, record. How many messages it handled."""
        now = self.clock.now()
        limit = limit or self.settings.delivery_batch
        with self.store.peek() as tx:  # no write transaction (nor SQLite's writer lock) when idle
            if not tx.messages.any_due(now):
                return 0
        claimed: list[int] = []

        def claim(tx: Tx) -> list[MessageRecord]:
            found = tx.messages.claim(
                now, limit, timedelta(seconds=self.settings.delivery_lease_seconds)
            )
            claimed[:] = [len(found)]
            return self.policies.apply(tx, found, now) if found else found

        rows = self.store.transact(claim)
        if not rows:
            return claimed[0] if claimed else 0
        with self.store.read() as tx:
            jobs = self._prepare(tx, rows, now)
        unsent = [j for j in jobs if j.payload is None]  # skipped, failed, deferred: no send
        if unsent:
            self.store.transact(lambda tx: self._record(tx, unsent, self.clock.now()))
        self._run(self._send_all([j for j in jobs if j.payload is not None]))
        return len(rows)

    def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Deliver until nothing is due now (tests, the CLI). How many messages in all."""
        total = 0
        for _ in range(max_rounds):
            done = self.deliver()
            total += done
            if not done:
                return total
        raise RuntimeError("delivery did not settle")

    def _run(self, work: Any) -> Any:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
            # A Delivery dropped without close() (a test, an aborted CLI command) must not leave
            # its loop and self-pipe for the garbage collector to warn about.
            weakref.finalize(self, self._loop.close)
        return self._loop.run_until_complete(work)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(self.providers.close())
            self._loop.close()
        self._loop = None

    # --- preparing -------------------------------------------------------------------------

    def _prepare(self, tx: Tx, rows: list[MessageRecord], now: datetime) -> list[Job]:
        workspaces = {r.id: workspace_from_row(r) for r in tx.workspaces.all()}
        by_workspace: dict[int, list[MessageRecord]] = defaultdict(list)
        for row in rows:
            by_workspace[row.workspace_id].append(row)
        jobs: list[Job] = []
        for workspace_id, group in by_workspace.items():
            workspace = workspaces[workspace_id]
            people = self.contacts.views(tx, workspace, sorted({r.contact_id for r in group}))
            automations = tx.automations.by_ids({r.automation_id for r in group if r.automation_id})
            templates = tx.templates.current(
                workspace_id, {r.template for r in group if r.template}
            )
            url, sender = email_setup(workspace, self.settings)
            own_email = channel_settings(workspace, "email")
            setup = Setup(
                base_url=self.settings.base_url(),
                email_from=sender,
                reply_to=own_email.get("reply_to"),
                unsubscribe_mailto=own_email.get("unsubscribe_mailto"),
                sms_from=channel_settings(workspace, "sms").get("from"),
                webhook_secret=webhook_secret(workspace),
                now=now,
            )
            group_jobs = []
            keys: dict[str, set[str]] = defaultdict(set)
            for row in group:
                contact = people.get(row.contact_id)
                automation = automations.get(row.automation_id)
                job = Job(row, workspace, contact, automation.key if automation else None)
                group_jobs.append(job)
                keys[row.channel].update(suppression_keys(contact, row.channel))
            suppressed = {
                channel: tx.messages.suppressed(workspace_id, channel, wanted)
                for channel, wanted in keys.items()
            }
            for job in group_jobs:
                template = templates.get(job.row.template) if job.row.template else None
                if template is not None and not _fits(template.channel, job.channel):
                    job.fail = (
                        f"template '{template.key}' is for {template.channel}, not {job.channel}"
                    )
                    continue
                prepare(job, template, setup, suppressed.get(job.channel, {}))
                if job.payload is not None and self._provider(job) is None:
                    job.payload = None
                    job.defer = f"no {_provider_kind(job.channel)} provider configured"
            jobs += group_jobs
        return jobs

    def _provider(self, job: Job) -> Any | None:
        if isinstance(job.payload, Email):
            return self.providers.email(job.workspace)
        if isinstance(job.payload, Sms):
            return self.providers.sms(job.workspace)
        if isinstance(job.payload, WebhookCall):
            return self.providers.webhook()
        return None

    # --- sending ---------------------------------------------------------------------------

    async def _send_all(self, jobs: list[Job]) -> None:
        """Send, and record outcomes as they come (whatever finished while the last group was
        being recorded goes in the next): at most `delivery_in_flight` messages are ever sent
        and not yet recorded, so a worker killed at any instant sends at most that many again."""
        for provider in {id(p): p for p in map(self._provider, jobs)}.values():
            if hasattr(provider, "new_round"):
                provider.new_round()
        room = asyncio.Semaphore(self.settings.delivery_in_flight)
        finished: list[Job] = []
        arrived = asyncio.Event()

        async def send(job: Job) -> None:
            await room.acquire()  # released once its outcome is committed
            await self._send(job)
            finished.append(job)
            arrived.set()

        async def record() -> None:
            left = len(jobs)
            while left:
                await arrived.wait()
                arrived.clear()
                group, finished[:] = list(finished), []
                if not group:
                    continue
                await asyncio.to_thread(
                    self.store.transact,
                    lambda tx, group=group: self._record(tx, group, self.clock.now()),
                )
                left -= len(group)
                for _ in group:
                    room.release()

        await asyncio.gather(record(), *(send(job) for job in jobs))

    async def _send(self, job: Job) -> None:
        provider = self._provider(job)
        started = time.perf_counter()
        try:
            job.receipt = await provider.send(job.payload)
        except DeliveryError as exc:
            job.error = exc
        except Exception as exc:  # a provider bug must not lose the message: retry it
            job.error = DeliveryError(f"{type(exc).__name__}: {exc}", transient=True)
        outcome = "ok" if job.error is None else "error"
        seconds = time.perf_counter() - started
        telemetry.PROVIDER_SECONDS.labels(job.channel, outcome).observe(seconds)

    # --- recording -------------------------------------------------------------------------

    def _record(self, tx: Tx, jobs: list[Job], now: datetime) -> None:
        by_workspace: dict[int, list[Job]] = defaultdict(list)
        for job in jobs:
            by_workspace[job.workspace.id].append(job)
        finished: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        for group in by_workspace.values():
            workspace = group[0].workspace
            writer = ContactWriter(tx, workspace, now, source="delivery")
            writer.preload(ids={j.row.contact_id for j in group if j.contact is not None})
            for job in group:
                writer.request_id = job.row.request_id  # its reactions trace to the request
                update, step = self._outcome(job, now, writer, tx)
                _observe(job, update, now)
                finished.append({"id": job.row.id, "claimed_attempts": job.row.attempts, **update})
                if step is not None and job.row.run_id is not None and job.row.automation_id:
                    steps.append(_step(job, now, *step))
            writer.flush()
        tx.messages.finish(finished)
        tx.automations.add_steps(steps)

    def _outcome(
        self, job: Job, now: datetime, writer: ContactWriter, tx: Tx
    ) -> tuple[dict[str, Any], tuple[str, dict[str, Any]] | None]:
        channel, props = job.channel, job.props
        state = writer.by_id(job.row.contact_id) if job.contact is not None else None
        base = {
            "recipient": job.recipient,
            "content": job.content or None,
            "lease_until": None,
            "sent_at": None,  # only what went out counts against caps
        }
        if job.skip:
            return {**base, "status": "skipped", "error": job.skip}, ("skipped", {"why": job.skip})
        if job.fail:
            writer.record(state, f"{channel}.failed", {**props, "reason": job.fail})
            return {**base, "status": "failed", "error": job.fail}, ("failed", {"why": job.fail})
        if job.receipt is not None:
            sent = {**props, "to": job.recipient}
            if job.receipt.provider_id:
                sent["provider_id"] = job.receipt.provider_id
            if channel == "sms":
                sent["segments"] = job.content.get("segments")
            if channel == "webhook":
                sent |= {k: job.receipt.detail.get(k) for k in ("status", "ms")}
            writer.record(state, f"{channel}.sent", sent)
            detail = {"why": f"sent to {job.recipient}", **_brief(job.receipt)}
            return {
                **base,
                "status": "sent",
                "sent_at": now,
                "provider_id": job.receipt.provider_id,
                "error": None,
            }, ("sent", detail)
        if job.payload is None and job.defer is None and job.channel == "site_message":
            writer.record(state, "site_message.sent", props)
            return {**base, "status": "sent", "sent_at": now, "error": None}, (
                "sent",
                {"why": "available to the website"},
            )
        error: DeliveryError = job.error or DeliveryError(job.defer or "not sent", transient=True)
        reason = error.reason[:900]
        if not error.transient:
            if error.bounce == "hard" and channel == "email" and job.recipient:
                self._bounced(tx, writer, state, job, reason, now)
            elif channel == "sms" and error.detail.get("code") == OPTED_OUT and job.recipient:
                # The carrier says the number replied STOP somewhere we did not hear it.
                tx.messages.suppress(
                    job.workspace.id, "sms", job.recipient, "unsubscribed", reason, now
                )
                writer.record(state, "sms.failed", {**props, "reason": reason, "opted_out": True})
            else:
                writer.record(
                    state, f"{channel}.failed", {**props, "reason": reason, **error.detail}
                )
            return {**base, "status": "failed", "error": reason}, ("failed", {"why": reason})
        if job.row.attempts >= self.settings.delivery_max_attempts:
            writer.record(
                state,
                f"{channel}.failed",
                {**props, "reason": reason, "attempts": job.row.attempts},
            )
            why = f"gave up after {job.row.attempts} attempts: {reason}"
            return {**base, "status": "dead", "error": reason}, ("dead", {"why": why})
        delay = backoff(job.row.attempts)
        retry_after = error.detail.get("retry_after")
        if isinstance(retry_after, int | float) and retry_after > delay.total_seconds():
            delay = timedelta(seconds=min(retry_after, BACKOFF_CAP))
        when = now + delay
        return {**base, "status": "pending", "send_after": when, "error": reason}, (
            "retrying",
            {"why": reason, "attempt": job.row.attempts, "next_attempt": when.isoformat()},
        )

    def _bounced(
        self, tx: Tx, writer: ContactWriter, state: Any, job: Job, reason: str, now: datetime
    ) -> None:
        """A hard bounce: the address never gets mail again, and its lists say bounced."""
        assert job.recipient is not None
        tx.messages.suppress(
            job.workspace.id, "email", job.recipient.lower(), "bounced", reason, now
        )
        writer.record(state, "email.bounced", {**job.props, "type": "hard", "reason": reason})
        if state is not None:
            mark_lists(writer, state, SubscriptionStatus.BOUNCED)

    # --- for the API -----------------------------------------------------------------------

    def preview(
        self, workspace: Workspace, key: str, contact_id: int, event: dict[str, Any]
    ) -> dict[str, Any]:
        """A template rendered for a contact, without tracking; records nothing."""
        with self.store.read() as tx:
            template = tx.templates.current(workspace.id, [key]).get(key)
            if template is None:
                raise NotFound(f"no template '{key}' in this workspace")
            contact = self.contacts.views(tx, workspace, [contact_id]).get(contact_id)
            if contact is None:
                raise NotFound(f"no contact {contact_id} in this workspace")
        try:
            return {"channel": template.channel, "version": template.version} | render_preview(
                workspace, template.channel, dict(template.content), contact, event, self.settings
            )
        except RenderError as exc:
            raise InvalidInput("template", str(exc)) from None

    def messages(
        self,
        workspace: Workspace,
        *,
        contact_id: int | None = None,
        status: str | None = None,
        channel: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[MessageRecord]:
        with self.store.read() as tx:
            return tx.messages.page(
                workspace.id,
                contact_id=contact_id,
                status=status,
                channel=channel,
                after_id=after_id,
                limit=limit,
                newest_first=newest_first,
            )

    def message(self, workspace: Workspace, message_id: int) -> MessageRecord:
        with self.store.read() as tx:
            row = tx.messages.get(workspace.id, message_id)
        if row is None:
            raise NotFound(f"no message {message_id} in this workspace")
        return row

    def retry(self, workspace: Workspace, message_id: int) -> None:
        def work(tx: Tx) -> None:
            if tx.messages.get(workspace.id, message_id) is None:
                raise NotFound(f"no message {message_id} in this workspace")
            if not tx.messages.retry(workspace.id, message_id, self.clock.now()):
                raise Conflict(f"message {message_id} is not failed or dead; nothing to retry")

        self.store.transact(work)


def mark_lists(writer: ContactWriter, state: Any, status: SubscriptionStatus) -> None:
    """Every list the contact is subscribed (or waiting to confirm) to takes `status`."""
    _tags, subscriptions = writer._relations(state)
    for list_id, current in list(subscriptions.items()):
        if current in ("subscribed", "unconfirmed"):
            writer.set_subscription(state, writer.catalog.lists_by_id[list_id], status)


def _fits(template_channel: str, channel: str) -> bool:
    return template_channel == channel or (channel == "team" and template_channel == "email")


def _observe(job: Job, update: dict[str, Any], now: datetime) -> None:
    """Count the outcome (and, for a sent message, how long it waited in the outbox after it
    could go); log one that did not go out, with its context (ids and the provider's reason:
    never the recipient's content)."""
    outcome = "retry" if update["status"] == "pending" else update["status"]
    telemetry.DELIVERIES.labels(job.channel, outcome).inc()
    if outcome == "sent":
        ready = max(job.row.created_at, job.row.send_after or job.row.created_at)
        telemetry.OUTBOX_WAIT_SECONDS.labels(job.channel).observe(
            max((now - ready).total_seconds(), 0.0)
        )
    if outcome in ("retry", "failed", "dead"):
        log.warning(
            "%s message %d not sent (%s): %s",
            job.channel,
            job.row.id,
            outcome,
            update.get("error"),
            extra={
                "workspace_id": job.workspace.id,
                "message_id": job.row.id,
                "channel": job.channel,
                "attempt": job.row.attempts,
                "outcome": outcome,
                "request_id": job.row.request_id,
            },
        )


def _provider_kind(channel: str) -> str:
    return {"email": "email", "team": "email", "sms": "SMS", "webhook": "webhook"}.get(
        channel, channel
    )


def _brief(receipt: Receipt) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if receipt.provider_id:
        out["provider_id"] = receipt.provider_id
    for key in ("status", "ms", "refused"):
        if key in receipt.detail:
            out[key] = receipt.detail[key]
    return out


def _step(job: Job, now: datetime, outcome: str, reason: dict[str, Any]) -> dict[str, Any]:
    return {
        "workspace_id": job.workspace.id,
        "run_id": job.row.run_id,
        "contact_id": job.row.contact_id,
        "automation_id": job.row.automation_id,
        "version": job.row.version,
        "node": job.row.node,
        "outcome": outcome,
        "reason": {**reason, "message": job.row.id, "channel": job.channel},
        "at": now,
    }
