"""Each workspace's channel settings (sender, SMTP server, SMS account) and the providers made
from them. Secrets are write-only through the API: reading the settings shows them masked.

Settings live in the workspace's settings under `channels`; the server's environment
(`CONVEYOR_SMTP_URL`, `CONVEYOR_EMAIL_FROM`) is the default for workspaces without their own.
"""

from __future__ import annotations

import hashlib
import hmac
from email.utils import parseaddr
from typing import Any

from email_validator import EmailNotValidError, validate_email

from conveyor.channels.sms import base_url_problem
from conveyor.channels.smtp import SmtpConfig
from conveyor.clock import Clock
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.fields import normalize_email, normalize_phone
from conveyor.domain.workspaces import Workspace
from conveyor.services.workspaces import Workspaces
from conveyor.settings import Settings
from conveyor.store.records import SuppressionRecord
from conveyor.store.store import Store, Tx

SECRET_KEYS = {"smtp_url", "auth_token", "password"}
CHANNELS = ("email", "sms", "webhook")


def check_channel_settings(channel: str, raw: Any) -> dict[str, Any]:
    if channel not in CHANNELS:
        raise InvalidInput("channel", f"one of {', '.join(CHANNELS)}")
    if not isinstance(raw, dict):
        raise InvalidInput("", "a mapping of settings")
    allowed = {
        "email": {"from", "reply_to", "smtp_url", "unsubscribe_mailto"},
        "sms": {"account_sid", "auth_token", "from", "messaging_service_sid", "base_url"},
        "webhook": set(),
    }[channel]
    extra = sorted(set(raw) - allowed)
    if extra:
        raise InvalidInput(extra[0], f"{channel} settings are {', '.join(sorted(allowed))}")
    out = {k: v for k, v in raw.items() if v is not None}
    for key, value in out.items():
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(key, "expects text")
    if channel == "email":
        for key in ("from", "reply_to", "unsubscribe_mailto"):
            if key in out:
                _check_address(out[key], key)
        if "smtp_url" in out:
            try:
                SmtpConfig.from_url(out["smtp_url"])
            except ValueError as exc:
                raise InvalidInput("smtp_url", str(exc)) from None
    if channel == "sms" and out:
        for key in ("account_sid", "auth_token"):
            if key not in out:
                raise InvalidInput(key, "an SMS account needs account_sid and auth_token")
        if "from" not in out and "messaging_service_sid" not in out:
            raise InvalidInput("from", "a sender number (E.164) or a messaging_service_sid")
        if "base_url" in out:
            problem = base_url_problem(out["base_url"])
            if problem is not None:
                raise InvalidInput("base_url", problem)
    return out


def _check_address(value: str, key: str) -> None:
    _name, bare = parseaddr(value)
    try:
        validate_email(bare, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(key, f"not an email address: {exc}") from None


def masked(settings: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in settings.items():
        if key in SECRET_KEYS and isinstance(value, str):
            out[key] = "•••" + value[-4:] if key != "smtp_url" else _mask_url(value)
        else:
            out[key] = value
    return out


def _mask_url(url: str) -> str:
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.partition(":")[0]
    return f"{scheme}://{user}:•••@{tail}"


def channel_settings(workspace: Workspace, channel: str) -> dict[str, Any]:
    return dict((workspace.settings.get("channels") or {}).get(channel) or {})


def email_setup(workspace: Workspace, settings: Settings) -> tuple[str | None, str | None]:
    """(SMTP URL, From) for a workspace: its own, else the server's."""
    own = channel_settings(workspace, "email")
    return own.get("smtp_url") or settings.smtp_url, own.get("from") or settings.email_from


def webhook_secret(workspace: Workspace) -> str:
    """The key that signs this workspace's outbound webhooks (Conveyor-Signature)."""
    return hmac.new(workspace.secret.encode(), b"webhook-signing", hashlib.sha256).hexdigest()


def site_secret(workspace: Workspace) -> str:
    """The key of site message identity verification: `userHash` = HMAC-SHA256(it, userId),
    computed by the customer's own server so a visitor cannot claim another user's id."""
    return hmac.new(workspace.secret.encode(), b"site-identity", hashlib.sha256).hexdigest()


def site_user_hash(workspace: Workspace, user_id: str) -> str:
    """The `userHash` that proves a website visitor is `user_id` (hex HMAC-SHA256)."""
    return hmac.new(site_secret(workspace).encode(), user_id.encode(), hashlib.sha256).hexdigest()


def inbound_token(workspace: Workspace, purpose: str) -> str:
    """The secret path segment of a provider's inbound URL (SMS replies, email events)."""
    digest = hmac.new(workspace.secret.encode(), f"inbound:{purpose}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


class Channels:
    """The channel settings API, inbound URLs, and the workspace's suppression list."""

    def __init__(
        self, store: Store, clock: Clock, settings: Settings, workspaces: Workspaces
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.workspaces = workspaces

    def configure(self, workspace: Workspace, channel: str, raw: Any) -> Workspace:
        checked = check_channel_settings(channel, raw)
        current = dict(workspace.settings.get("channels") or {})
        previous = current.get(channel) or {}
        for key in SECRET_KEYS:  # a masked secret sent back unchanged keeps the stored one
            value = checked.get(key)
            if isinstance(value, str) and "•••" in value and key in previous:
                checked[key] = previous[key]
        current[channel] = checked
        return self.workspaces.update_settings(workspace, {"channels": current})

    def describe(self, workspace: Workspace) -> dict[str, Any]:
        base = self.settings.base_url().rstrip("/")
        inbound = f"{base}/inbound/{workspace.name}"
        url, sender = email_setup(workspace, self.settings)
        return {
            "email": masked(channel_settings(workspace, "email"))
            | {"effective_from": sender, "provider": "smtp" if url else None},
            "sms": masked(channel_settings(workspace, "sms")),
            "webhook": {
                "signing_secret": webhook_secret(workspace),
                "header": "Conveyor-Signature",
            },
            "site_messages": {
                "identity_secret": site_secret(workspace),
                "verify": bool(workspace.settings.get("site_messages_verify")),
            },
            "inbound": {
                "sms_replies": f"{inbound}/{inbound_token(workspace, 'sms')}/sms",
                "sms_status": f"{inbound}/{inbound_token(workspace, 'sms')}/sms-status",
                "email_events": f"{inbound}/{inbound_token(workspace, 'email')}/email-events",
            },
        }

    # --- suppressions ----------------------------------------------------------------------

    def normalize(self, workspace: Workspace, channel: str, address: str) -> str:
        if channel == "email":
            text = address.strip().lower()
            if text.startswith("@") and "." in text and " " not in text and len(text) > 3:
                return text
            return normalize_email(text)
        return normalize_phone(address, workspace.default_country)

    def suppress(
        self, workspace: Workspace, channel: str, address: str, detail: str | None
    ) -> SuppressionRecord:
        try:
            normalized = self.normalize(workspace, channel, address)
        except InvalidInput as exc:
            raise InvalidInput("address", exc.reason) from None

        def work(tx: Tx) -> SuppressionRecord:
            tx.messages.suppress(
                workspace.id, channel, normalized, "manual", detail, self.clock.now()
            )
            return tx.messages.suppressed(workspace.id, channel, [normalized])[normalized]

        return self.store.transact(work)

    def unsuppress(self, workspace: Workspace, channel: str, address: str) -> None:
        try:
            normalized = self.normalize(workspace, channel, address)
        except InvalidInput:
            normalized = address.strip().lower()

        def work(tx: Tx) -> None:
            if not tx.messages.unsuppress(workspace.id, channel, normalized):
                raise NotFound(f"{address} is not on the {channel} suppression list")

        self.store.transact(work)

    def suppressions(
        self, workspace: Workspace, channel: str | None, after: str | None, limit: int
    ) -> list[SuppressionRecord]:
        with self.store.read() as tx:
            return tx.messages.suppression_page(workspace.id, channel, after, limit)
