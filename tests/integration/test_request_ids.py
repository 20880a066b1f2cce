"""One id follows a lead from the HTTP call to the email: the request's X-Request-ID is stamped on
the events it wrote, the run its event started, the events that run recorded and the messages it
queued, and the delivery events of those messages (both databases)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.flows import activate, save_template, settle
from tests.support.smtp import SmtpSink


@pytest.fixture
def smtp(client, tenant):
    sink = SmtpSink().start()
    r = client.put("/channels/email", headers=tenant.admin,
                   json={"from": "Shop <news@acme-shop.com>", "smtp_url": sink.url})
    assert r.status_code == 200, r.text
    yield sink
    sink.stop()


def test_a_request_id_follows_the_lead_into_runs_events_and_messages(
    client, tenant, conveyor, smtp
):
    save_template(client, tenant, {"key": "hello", "channel": "email",
                                   "content": {"subject": "Hello", "text": "Hi!"}})
    activate(client, tenant, {
        "key": "lead", "triggers": [{"event": "signed_up"}],
        "nodes": [{"id": "mail", "type": "send_email", "template": "hello"},
                  {"id": "tag", "type": "add_tag", "tag": "lead"}]})
    people = {"lead-ada": "ada@example.com", "lead-bob": "bob@example.com"}
    for rid, email in people.items():
        r = client.post("/v1/identify", headers={**tenant.write, "X-Request-ID": f"{rid}-id"},
                        json={"userId": email, "traits": {"email": email}})
        assert r.status_code == 200, r.text

    def track(rid: str, email: str) -> None:  # at once: the group writer may take both together
        r = client.post("/v1/track", headers={**tenant.write, "X-Request-ID": rid},
                        json={"userId": email, "event": "signed_up"})
        assert r.status_code == 200 and r.headers["x-request-id"] == rid

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(track, people, people.values()))
    settle(conveyor)
    assert len(smtp.messages) == 2

    ws = tenant.workspace.id
    with conveyor.store.read() as tx:
        for rid, email in people.items():
            [contact] = tx.contacts.by_external_ids(ws, [email])
            log = tx.events.page(ws, contact_id=contact.id, limit=100)
            names = {e.name: e.request_id for e in log}
            assert names["contact.created"] == f"{rid}-id"
            # The trigger, the entry, the run's own changes and the delivery of its email.
            for name in ("signed_up", "automation.entered", "tag.added",
                         "automation.completed", "email.sent"):
                assert names[name] == rid, (name, names)
            runs = tx.automations.of_contacts([contact.id], ("finished",))
            assert [r.request_id for r in runs] == [rid]
            [message] = tx.messages.page(ws, contact_id=contact.id)
            assert message.request_id == rid and message.status == "sent"
