"""Workspaces (tenants), their settings, and the kinds of API key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from conveyor.domain.errors import InvalidInput

WORKSPACE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


class KeyKind(StrEnum):
    ADMIN = "admin"  # everything in its workspace
    WRITE = "write"  # tracking endpoints only; safe to embed in a web page


@dataclass(frozen=True)
class Workspace:
    id: int
    name: str
    secret: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def default_country(self) -> str | None:
        """Region used to read phone numbers written without a country code (ISO 3166 alpha-2)."""
        return self.settings.get("default_country")

    @property
    def auto_declare_fields(self) -> bool:
        """Whether identify traits nobody declared become custom fields (type inferred)."""
        return self.settings.get("auto_declare_fields", True)


def check_workspace_name(name: str) -> str:
    if not WORKSPACE_NAME.match(name):
        raise InvalidInput(
            "name",
            "a workspace name is 1-100 of a-z, 0-9, - and _, starting with a letter or digit",
        )
    return name
