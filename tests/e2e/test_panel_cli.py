"""The panel's way in, as a new user meets it: `conveyor serve` prints a one-time setup link
while no one can sign in; `conveyor user create` gives a member a password."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.test_cli_and_server import run, serving

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


def form_token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_the_setup_link_creates_the_first_owner_then_goes_away(env):
    with serving(env) as (base, output):
        link = re.search(r"(http://\S+/app/setup\?token=[\w-]+)", output)
        assert link, output
        with httpx.Client(headers={"Origin": base}, timeout=30) as browser:
            page = browser.get(link.group(1))
            assert page.status_code == 200 and "default" in page.text
            done = browser.post(
                f"{base}/app/setup",
                data={
                    "token": link.group(1).split("token=")[1],
                    "name": "Olga",
                    "email": "olga@example.com",
                    "password": PASSWORD,
                    "confirm": PASSWORD,
                    "csrf": form_token(page.text),
                },
            )
            assert done.status_code == 303, done.text
            assert "Olga" in browser.get(f"{base}/app/automations").text
            assert browser.get(link.group(1)).status_code == 404  # used up
    with serving(env) as (base, output):
        assert "/app/setup" not in output  # someone can sign in: no link any more
        assert f"Panel: {base}/app" in output


def test_user_create_then_sign_in(env):
    early = run(env, "user", "create", "--email", "ada@example.com", "--password-stdin",
                input=PASSWORD + "\n", check=False)
    assert early.returncode == 1
    assert "no workspace named 'default': `conveyor serve` creates" in early.stderr
    run(env, "workspace", "create", "default")
    made = run(env, "user", "create", "--email", "Ada@Example.com", "--role", "admin",
               "--password-stdin", input=PASSWORD + "\n", check=False)
    assert made.returncode == 0, made.stderr
    assert "ada@example.com can sign in to workspace 'default' as admin" in made.stdout
    short = run(env, "user", "password", "--email", "ada@example.com", "--password-stdin",
                input="short\n", check=False)
    assert short.returncode == 1 and "password: at least 10 characters" in short.stderr
    assert "ada@example.com" in run(env, "member", "list").stdout
    with serving(env) as (base, _), httpx.Client(headers={"Origin": base}, timeout=30) as browser:
        page = browser.get(f"{base}/app/signin")
        signed = browser.post(
            f"{base}/app/signin",
            data={"email": "ada@example.com", "password": PASSWORD, "csrf": form_token(page.text)},
        )
        assert signed.status_code == 303
        assert "admin" in browser.get(f"{base}/app/automations").text
