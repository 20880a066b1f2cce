"""Steps the channel and policy tests share: run the engine and delivery until nothing is due,
activate an automation, save a template — all through the public API."""

from __future__ import annotations

from typing import Any


def settle(conveyor: Any) -> None:
    """Engine and delivery until neither has anything due now (delivery's events can wake runs,
    whose messages then go out too)."""
    for _ in range(20):
        conveyor.engine.run_until_idle()
        if not conveyor.delivery.run_until_idle():
            conveyor.engine.run_until_idle()
            return
    raise AssertionError("engine and delivery did not settle")


def activate(client: Any, tenant: Any, definition: dict[str, Any]) -> None:
    r = client.post("/automations", headers=tenant.admin, json=definition)
    assert r.status_code == 200, r.text
    r = client.patch(f"/automations/{definition['key']}", headers=tenant.admin,
                     json={"status": "active"})
    assert r.status_code == 200, r.text


def save_template(client: Any, tenant: Any, template: dict[str, Any]) -> None:
    r = client.post("/templates", headers=tenant.admin, json=template)
    assert r.status_code == 200, r.text
