"""The OpenAPI document tells the truth (issue 19): errors are documented as the problem+json they
are, operations say which key they need and have names a person would give them, every request
body has an example that its own schema accepts — and a client generated from the document by
`openapi-python-client` drives a flow against the live server, errors included."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest

GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture
def spec(client: httpx.Client) -> dict:
    return client.get("/openapi.json").json()


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_errors_are_documented_as_problems_with_their_statuses(spec):
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert set(response["content"]) == {"application/problem+json"}, (path, status)
        assert "500" in responses
        if operation["security"]:
            assert "401" in responses, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if "requestBody" in operation:
            assert {"413", "422"} <= set(responses), (method, path)


def test_operations_name_their_keys_and_themselves(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["basic"]["scheme"] == "basic"
    found = {}
    for path, method, operation in operations(spec):
        found[(method, path)] = operation["security"]
        assert re.fullmatch(r"[a-z][a-z0-9_]*", operation["operationId"]), operation["operationId"]
        # not FastAPI's generated `create_contact_contacts_post`
        assert not re.search(r"__|_(get|post|put|patch|delete)$", operation["operationId"])
    assert found[("post", "/contacts")] == [{"bearer": []}]
    assert found[("post", "/v1/track")] == [{"bearer": []}, {"basic": []}]
    assert found[("get", "/health")] == []  # public
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids))


def test_every_request_body_has_an_example_its_schema_accepts(spec):
    checked = 0
    for path, method, operation in operations(spec):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            assert "example" in media, f"{method.upper()} {path} ({media_type}) has no example"
            if media_type == "application/json":
                schema = {**media["schema"], "components": spec["components"]}
                jsonschema.validate(media["example"], schema)
                checked += 1
    assert checked >= 30


def test_a_generated_client_drives_a_flow_and_reads_errors(server, tenant, spec, tmp_path):
    out = tmp_path / "conveyor_client"
    schema = tmp_path / "openapi.json"
    schema.write_text(httpx.get(f"{server.url}/openapi.json").text)
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(schema), "--meta", "none",
         "--output-path", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        package = importlib.import_module("conveyor_client")
        create = importlib.import_module("conveyor_client.api.contacts.create_contact")
        get = importlib.import_module("conveyor_client.api.contacts.get_contact")
        models = importlib.import_module("conveyor_client.models")

        with (
            package.AuthenticatedClient(base_url=server.url, token=tenant.admin_key) as api,
            package.Client(base_url=server.url) as anonymous,
        ):
            made = create.sync_detailed(client=api, body=models.ContactIn.from_dict(
                {"email": "gen@example.com", "first_name": "Gen"}))
            assert made.status_code == 201, made.content
            assert made.parsed.email == "gen@example.com"
            again = get.sync(client=api, contact_id=made.parsed.id)
            assert again.first_name == "Gen"

            bad = create.sync_detailed(client=api, body=models.ContactIn.from_dict(
                {"email": "not an email"}))
            assert bad.status_code == 422
            assert isinstance(bad.parsed, models.Problem)
            assert bad.parsed.field == "email" and bad.parsed.status == 422

            missing = get.sync_detailed(client=api, contact_id=10**9)
            assert missing.status_code == 404 and isinstance(missing.parsed, models.Problem)

            refused = get.sync_detailed(client=anonymous, contact_id=made.parsed.id)
            assert refused.status_code == 401 and isinstance(refused.parsed, models.Problem)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("conveyor_client")]:
            del sys.modules[name]
        shutil.rmtree(out, ignore_errors=True)
