"""What each team role may do in the panel: one table, checked by the server on every action."""

from __future__ import annotations

from enum import StrEnum

from conveyor.domain.errors import Forbidden


class Action(StrEnum):
    VIEW = "view"  # see the workspace's pages
    MANAGE_AUTOMATIONS = "manage_automations"  # activate, pause, archive, apply
    EDIT_CONTACTS = "edit_contacts"  # fields, tags, lists of contacts
    EDIT_CRM = "edit_crm"  # deals, tasks, notes, owners
    MANAGE_SETTINGS = "manage_settings"  # channels, policies, scoring, keys
    MANAGE_TEAM = "manage_team"  # members and their roles
    EDIT_TEMPLATES = "edit_templates"  # save message templates, send a test of one


_EVERYTHING = frozenset(Action)
GRANTS: dict[str, frozenset[Action]] = {
    "owner": _EVERYTHING,
    "admin": _EVERYTHING,
    "marketer": frozenset(
        {
            Action.VIEW,
            Action.MANAGE_AUTOMATIONS,
            Action.EDIT_CONTACTS,
            Action.EDIT_CRM,
            Action.EDIT_TEMPLATES,
        }
    ),
    "sales": frozenset({Action.VIEW, Action.EDIT_CONTACTS, Action.EDIT_CRM}),
    "viewer": frozenset({Action.VIEW}),
}


def can(role: str, action: Action) -> bool:
    return action in GRANTS.get(role, frozenset())


def require(role: str, action: Action) -> None:
    """Raise Forbidden unless `role` may do `action`."""
    if not can(role, action):
        raise Forbidden(f"a {role} may not {action.value.replace('_', ' ')}")
