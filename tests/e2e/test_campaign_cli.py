"""Campaigns and bulk jobs from the real `conveyor` CLI: the example newsletter file created,
counted, scheduled at 09:00 local time, reported and cancelled; a bulk tag job confirmed by
count; errors that name the file and the field, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli_and_server import run

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_newsletter_and_bulk_job_from_the_command_line(env, tmp_path):
    run(env, "workspace", "create", "shop")
    run(env, "template", "apply", str(EXAMPLES / "templates" / "newsletter.yaml"), "-w", "shop")
    people = tmp_path / "people.csv"
    people.write_text("email,first_name,time_zone\nada@example.com,Ada,Europe/Warsaw\n"
                      "bo@example.com,Bo,America/New_York\n")
    run(env, "contacts", "import", str(people), "--list", "newsletter", "-w", "shop")
    run(env, "segment", "apply", str(EXAMPLES / "segments" / "inactive.yaml"), "-w", "shop")
    newsletter = str(EXAMPLES / "campaigns" / "newsletter.yaml")
    assert "valid (email campaign 'march-newsletter')" in run(
        env, "campaign", "validate", newsletter, "-w", "shop").stdout
    created = run(env, "campaign", "create", newsletter, "-w", "shop").stdout
    assert "march-newsletter: created (draft); audience now: 2 contacts" in created
    scheduled = run(env, "campaign", "schedule", "march-newsletter", "-w", "shop").stdout
    assert "scheduled" in scheduled
    status = run(env, "campaign", "status", "march-newsletter", "-w", "shop").stdout
    assert "march-newsletter: scheduled" in status
    assert "scheduled" in run(env, "campaign", "list", "-w", "shop").stdout
    cancelled = run(env, "campaign", "cancel", "march-newsletter", "-w", "shop").stdout
    assert "march-newsletter: cancelled" in cancelled
    again = run(env, "campaign", "cancel", "march-newsletter", "-w", "shop", check=False)
    assert again.returncode == 1 and "is cancelled" in again.stderr

    started = run(env, "bulk", "start", "tag", "spring", "--list", "newsletter", "--yes",
                  "-w", "shop").stdout
    assert "bulk job 1: tag 2 contacts, queued" in started
    assert "0/2" in run(env, "bulk", "status", "-w", "shop").stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("key: oops\ntemplate: newsletter\naudience: {lists: [nope]}\n")
    failed = run(env, "campaign", "create", str(bad), "-w", "shop", check=False)
    assert failed.returncode == 1
    assert str(bad) in failed.stderr and "audience.lists" in failed.stderr
