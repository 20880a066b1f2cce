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
    default_workspace: str = "default"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.expanduser() / 'conveyor.db'}"

    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
