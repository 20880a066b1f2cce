"""Roles in the panel: what each may do, decided in one table on the server."""

import pytest

from conveyor.domain.errors import Forbidden
from conveyor.domain.permissions import Action, can, require


def test_a_viewer_only_views():
    assert can("viewer", Action.VIEW)
    assert [a for a in Action if can("viewer", a)] == [Action.VIEW]
    with pytest.raises(Forbidden, match="a viewer may not manage automations"):
        require("viewer", Action.MANAGE_AUTOMATIONS)


def test_sales_edit_the_crm_but_not_automations():
    assert can("sales", Action.EDIT_CRM)
    assert not can("sales", Action.MANAGE_AUTOMATIONS)


def test_marketers_run_automations_but_not_the_team_or_settings():
    assert can("marketer", Action.MANAGE_AUTOMATIONS)
    assert not can("marketer", Action.MANAGE_TEAM)
    assert not can("marketer", Action.MANAGE_SETTINGS)


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_do_everything(role):
    assert all(can(role, a) for a in Action)


def test_an_unknown_role_may_do_nothing():
    assert not any(can("intern", a) for a in Action)


def test_marketers_edit_templates_and_sales_and_viewers_do_not():
    assert can("marketer", Action.EDIT_TEMPLATES)
    assert not can("sales", Action.EDIT_TEMPLATES)
    with pytest.raises(Forbidden, match="a viewer may not edit templates"):
        require("viewer", Action.EDIT_TEMPLATES)
