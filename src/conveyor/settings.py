"""Configuration, read from CONVEYOR_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "conveyor"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    # Limits match Segment's HTTP tracking API so that SDK batching settings carry over.
    max_request_bytes: int = 512_000
    max_import_bytes: int = 50_000_000
    max_batch_items: int = 1_000
    max_event_bytes: int = 32_768
    # Objects and arrays nested deeper than this in a call (or a hook body) are refused.
    max_json_depth: int = 32
    # A request's URL and header fields (431 past either): browsers send ~1-2 KB in ~15 fields.
    max_header_bytes: int = 32_768
    max_header_fields: int = 100
    # Each Liquid part of a template (an email's html, its text, ...), in UTF-8 bytes. Gmail clips
    # an email's HTML past 102 KB; a parsed template holds ~35 bytes per character.
    max_template_bytes: int = 256_000
    default_workspace: str = "default"
    # An API process keeps a key it has checked for this long: a revoked key (or a workspace's
    # changed settings) reaches the other processes within it; 0 reads the key on every request.
    key_cache_seconds: float = 1.0
    # The most tracking calls one group-commit transaction applies (services/group_commit.py).
    ingest_group_calls: int = 5_000
    # Delivery. A workspace's own channel settings (PUT /channels/email) take precedence.
    smtp_url: str | None = None  # smtp://user:pass@host:587?security=starttls
    email_from: str | None = None  # "Acme <news@acme.example>"
    # Outbound webhooks (and providers set per workspace) never reach private, loopback or
    # link-local addresses, except these (CIDRs or IPs, comma-separated in the environment).
    webhook_allow: str = ""
    delivery_max_attempts: int = 12
    delivery_batch: int = 200
    # Messages sent (or being sent) and not yet recorded, at most: what a killed worker may send
    # twice. Outcomes are committed a few at a time as sends finish.
    delivery_in_flight: int = 16
    # How long a claimed message stays a worker's: a worker killed holding it, its messages go
    # again after this (the same idempotency key and Message-ID).
    delivery_lease_seconds: float = 300.0
    engine_batch: int = 1_000  # events per pass over the log, due runs per claim
    # Operations. `/readyz` fails when no worker beat within `ready_heartbeat_seconds` (unless
    # `ready_require_workers` is off), or the log / due runs fall this far behind.
    heartbeat_seconds: float = 10.0
    ready_heartbeat_seconds: float = 60.0
    ready_require_workers: bool = True
    ready_max_log_lag: int = 100_000  # events not yet handled by some consumer
    ready_max_due_runs: int = 100_000  # runs whose timer is due and not yet advanced
    worker_metrics_port: int | None = None  # `conveyor worker` serves /metrics here when set
    bootstrap_key_file: Path | None = None  # the first admin key goes here (0600), not stdout
    # The panel's session cookie is `Secure` when a request arrives over https, when the public
    # URL is https, or always with this on (behind a TLS-terminating proxy that speaks http).
    secure_cookies: bool = False

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.expanduser() / 'conveyor.db'}"

    def webhook_allow_list(self) -> list[str]:
        return [part.strip() for part in self.webhook_allow.split(",") if part.strip()]

    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
