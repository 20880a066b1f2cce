"""What comes back from messages, as contact events: opens and clicks (signed links),
unsubscribes (the page and RFC 8058 one-click), bounces and complaints from providers, SMS
replies with STOP/START keywords, and site messages shown, clicked or dismissed.

Every event names the message, and through it the run, node and automation, so triggers,
waits, goals and reports can use it. A forged or altered token finds nothing and records nothing.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from conveyor.clock import Clock
from conveyor.domain import reports, tracking
from conveyor.domain.contacts import SubscriptionStatus
from conveyor.domain.errors import Forbidden, InvalidInput, NotFound
from conveyor.domain.sms import keyword
from conveyor.domain.workspaces import Workspace
from conveyor.services.channel_config import site_user_hash
from conveyor.services.contact_writer import ContactWriter
from conveyor.services.delivery import mark_lists
from conveyor.services.outgoing import message_props
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.records import MessageRecord
from conveyor.store.store import Store, Tx


@dataclass(frozen=True)
class Unsubscribed:
    list_name: str | None  # None: from every email


@dataclass(frozen=True)
class EmailReport:
    """A provider's word about an email: `kind` is delivered, bounced or complained."""

    kind: str
    email: str | None = None
    provider_id: str | None = None  # our Message-ID, or the provider's id for the message
    bounce: str = "hard"  # hard | soft
    reason: str | None = None


class Reactions:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # --- tracking links ----------------------------------------------------------------------

    def _message(
        self, tx: Tx, kind: str, token: str
    ) -> tuple[Workspace, MessageRecord, tracking.TokenData]:
        workspace_id = tracking.workspace_of(token)
        row = tx.workspaces.get(workspace_id) if workspace_id is not None else None
        data = tracking.verify(row.secret, kind, token) if row is not None else None
        message = tx.messages.get(data.workspace_id, data.message_id) if data else None
        if data is None or message is None:
            raise NotFound("this link is not valid")
        return workspace_from_row(row), message, data

    def opened(self, token: str, ip: str | None, user_agent: str | None) -> None:
        def work(tx: Tx) -> None:
            workspace, message, _ = self._message(tx, "open", token)
            props = _props(tx, message)
            proxy = tracking.mail_proxy(ip, user_agent)
            if proxy:
                props |= {"proxy": proxy}
            machine = reports.machine_open(ip, user_agent, self._since_sent(message))
            if machine:  # reports count it apart and leave it out of open rates
                props |= {"machine": machine}
            self._record(tx, workspace, message.contact_id, "email.opened", props)

        self.store.transact(work)

    def clicked(self, token: str, ip: str | None, user_agent: str | None) -> str:
        """Records the click and answers the URL to redirect to: only one that was in the
        message (the token names its position in the message's links)."""

        def work(tx: Tx) -> str:
            workspace, message, data = self._message(tx, "click", token)
            links = (message.content or {}).get("links") or []
            if data.link is None or data.link >= len(links):
                raise NotFound("this link is not valid")
            url = links[data.link]
            props = {**_props(tx, message), "url": url, "link": data.link}
            machine = reports.machine_click(ip, user_agent, self._since_sent(message))
            if machine:  # a link scanner: counted apart, never credited with a conversion
                props |= {"machine": machine}
            self._record(tx, workspace, message.contact_id, "email.clicked", props)
            return url

        return self.store.transact(work)

    def unsubscribe_info(self, token: str) -> tuple[Workspace, str | None, str | None]:
        """(workspace, the list the email was sent for, the contact's email) for the page."""
        with self.store.read() as tx:
            workspace, message, _ = self._message(tx, "unsubscribe", token)
            contact = tx.contacts.by_ids(workspace.id, [message.contact_id])
        list_key = ((message.payload or {}).get("config") or {}).get("list")
        return workspace, list_key, contact[0].email if contact else None

    def unsubscribe(self, token: str, *, everything: bool = False) -> Unsubscribed:
        """From the message's list, or from all email when it had none (or when asked)."""

        def work(tx: Tx) -> Unsubscribed:
            workspace, message, _ = self._message(tx, "unsubscribe", token)
            now = self.clock.now()
            writer = ContactWriter(tx, workspace, now, source="unsubscribe")
            state = writer.by_id(message.contact_id)
            if state is None:
                raise NotFound("this link is not valid")
            list_key = ((message.payload or {}).get("config") or {}).get("list")
            info = writer.catalog.lists.get(list_key) if list_key else None
            props = _props(tx, message)
            # Providers and scanners replay one-click POSTs: only a change is logged, so a
            # replay triggers no automation and counts in no report a second time.
            if info is not None and not everything:
                if writer.set_subscription(state, info, SubscriptionStatus.UNSUBSCRIBED):
                    writer.record(state, "email.unsubscribed", {**props, "list": info.key})
                writer.flush()
                return Unsubscribed(info.name)
            suppressed = bool(state.standard.get("email")) and tx.messages.suppress(
                workspace.id,
                "email",
                state.standard["email"].lower(),
                "unsubscribed",
                f"unsubscribe link of message {message.id}",
                now,
            )
            _tags, lists = writer._relations(state)
            listed = any(status in ("subscribed", "unconfirmed") for status in lists.values())
            mark_lists(writer, state, SubscriptionStatus.UNSUBSCRIBED)
            if suppressed or listed:
                writer.record(state, "email.unsubscribed", {**props, "list": None})
            writer.flush()
            return Unsubscribed(None)

        return self.store.transact(work)

    # --- providers' reports ------------------------------------------------------------------

    def email_reports(self, workspace: Workspace, reports: list[EmailReport]) -> list[str]:
        """Apply delivery, bounce and complaint reports; what happened to each, in order."""

        def work(tx: Tx) -> list[str]:
            now = self.clock.now()
            writer = ContactWriter(tx, workspace, now, source="email-events")
            by_id = tx.messages.by_provider_ids(
                workspace.id, [r.provider_id for r in reports if r.provider_id]
            )
            outcomes = []
            for report in reports:
                message = by_id.get(report.provider_id) if report.provider_id else None
                state = writer.by_id(message.contact_id) if message is not None else None
                if state is None and report.email:
                    state = writer.by_email(report.email.strip().lower())
                if state is None:
                    outcomes.append("unknown recipient")
                    continue
                props = _props(tx, message) if message is not None else {"channel": "email"}
                address = (report.email or state.standard.get("email") or "").lower()
                if report.kind == "delivered":
                    writer.record(state, "email.delivered", props)
                elif report.kind == "bounced":
                    writer.record(
                        state,
                        "email.bounced",
                        {**props, "type": report.bounce, "reason": report.reason},
                    )
                    if report.bounce == "hard" and address:
                        tx.messages.suppress(
                            workspace.id, "email", address, "bounced", report.reason, now
                        )
                        mark_lists(writer, state, SubscriptionStatus.BOUNCED)
                elif report.kind == "complained":
                    writer.record(state, "email.complained", props)
                    if address:
                        tx.messages.suppress(
                            workspace.id, "email", address, "complained", report.reason, now
                        )
                    mark_lists(writer, state, SubscriptionStatus.COMPLAINED)
                else:
                    outcomes.append(f"ignored: {report.kind}")
                    continue
                outcomes.append(report.kind)
            writer.flush()
            return outcomes

        return self.store.transact(work)

    # --- SMS ---------------------------------------------------------------------------------

    def sms_reply(
        self, workspace: Workspace, phone: str, body: str, provider_id: str | None
    ) -> str:
        """An inbound SMS: `sms.replied`, and STOP/START change the number's SMS consent."""

        def work(tx: Tx) -> str:
            now = self.clock.now()
            writer = ContactWriter(tx, workspace, now, source="sms")
            row = tx.contacts.by_phone(workspace.id, phone)
            state = writer.by_id(row.id) if row is not None else None
            word = keyword(body)
            if word == "stop":
                tx.messages.suppress(
                    workspace.id, "sms", phone, "unsubscribed", "replied STOP", now
                )
            elif word == "start":
                tx.messages.unsuppress(workspace.id, "sms", phone)
            if state is None:
                return f"unknown number ({word or 'reply'})"
            props: dict[str, Any] = {"from": phone, "body": body[:1600], "keyword": word}
            if provider_id:
                props["provider_id"] = provider_id
            writer.record(state, "sms.replied", props)
            if word in ("stop", "start"):
                writer.record(
                    state,
                    "sms.unsubscribed" if word == "stop" else "sms.resubscribed",
                    {"from": phone},
                )
            writer.flush()
            return word or "reply"

        return self.store.transact(work)

    def sms_status(
        self, workspace: Workspace, provider_id: str, status: str, error: str | None
    ) -> bool:
        """A provider's status callback: delivered or failed, as `sms.delivered`/`sms.failed`."""
        if status not in ("delivered", "undelivered", "failed"):
            return False

        def work(tx: Tx) -> bool:
            message = tx.messages.by_provider_ids(workspace.id, [provider_id]).get(provider_id)
            if message is None:
                return False
            name = "sms.delivered" if status == "delivered" else "sms.failed"
            props = _props(tx, message) | ({"error": error} if error else {})
            self._record(tx, workspace, message.contact_id, name, props)
            return True

        return self.store.transact(work)

    # --- site messages -----------------------------------------------------------------------

    def site_visitor(
        self,
        workspace: Workspace,
        *,
        user_id: str | None,
        anonymous_id: str | None,
        user_hash: str | None = None,
    ) -> int | None:
        """The contact a website visitor is (None: not met yet), by `userId` or else
        `anonymousId`. With the workspace setting `site_messages_verify`, a userId must come with
        its `userHash`, and an anonymousId answers only while its contact is anonymous: an
        identify naming someone else's userId or email would otherwise link a visitor's own
        anonymousId to that person."""
        verify = bool(workspace.settings.get("site_messages_verify"))
        if user_id:
            expected = site_user_hash(workspace, user_id).encode()
            if verify and not (
                user_hash and hmac.compare_digest(user_hash.strip().lower().encode(), expected)
            ):
                raise Forbidden("identity verification is on: send the userHash of this userId")
            with self.store.read() as tx:
                rows = tx.contacts.by_external_ids(workspace.id, [user_id])
            return rows[0].id if rows else None
        if not anonymous_id:
            raise InvalidInput("userId", "give a userId or an anonymousId")
        with self.store.read() as tx:
            contact_id = tx.contacts.alias_targets(workspace.id, [anonymous_id]).get(anonymous_id)
            rows = tx.contacts.by_ids(workspace.id, [contact_id]) if contact_id else []
        if not rows:
            return None
        if verify and (rows[0].external_id is not None or rows[0].email is not None):
            raise Forbidden(
                "identity verification is on and this visitor is known: ask by userId with its "
                "userHash"
            )
        return rows[0].id

    def site_messages(self, workspace: Workspace, contact_id: int) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            rows = tx.messages.page(
                workspace.id, contact_id=contact_id, status="sent", channel="site_message"
            )
        return [{"id": r.id, **(r.content or {})} for r in rows]

    def site_message_event(
        self, workspace: Workspace, contact_id: int, message_id: int, what: str
    ) -> None:
        if what not in ("shown", "clicked", "dismissed"):
            raise InvalidInput("event", "shown, clicked or dismissed")

        def work(tx: Tx) -> None:
            message = tx.messages.get(workspace.id, message_id)
            if (
                message is None
                or message.contact_id != contact_id
                or message.channel != "site_message"
            ):
                raise NotFound(f"no site message {message_id} for this visitor")
            self._record(tx, workspace, contact_id, f"site_message.{what}", _props(tx, message))
            if what in ("clicked", "dismissed"):
                tx.messages.set_status(message.id, what)

        self.store.transact(work)

    # --- shared ------------------------------------------------------------------------------

    def _since_sent(self, message: MessageRecord) -> float | None:
        if message.sent_at is None:
            return None
        return (self.clock.now() - message.sent_at).total_seconds()

    def _record(
        self, tx: Tx, workspace: Workspace, contact_id: int, name: str, props: dict[str, Any]
    ) -> None:
        writer = ContactWriter(tx, workspace, self.clock.now(), source="tracking")
        state = writer.by_id(contact_id)
        if state is not None:
            writer.record(state, name, props)
            writer.flush()


def _props(tx: Tx, message: MessageRecord) -> dict[str, Any]:
    found = (
        tx.automations.by_ids([message.automation_id]).get(message.automation_id)
        if message.automation_id
        else None
    )
    return message_props(message, found.key if found is not None else None)
