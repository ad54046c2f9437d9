"""A JSON Schema in a plan never makes Magic Box fetch anything: a `$ref` outside the schema is
refused when the plan is saved, and never followed when a result is validated."""
from __future__ import annotations

import http.server
import json

import pytest
import yaml
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from orchestration.engine.scheduler import start_run
from orchestration.models import Plan
from orchestration.plans.schema_refs import remote_refs
from tests.conftest import local_http_server, run_to_end, store_unchecked
from tests.views.test_plan_editor import form


@pytest.fixture
def schema_server():
    """An HTTP server on 127.0.0.1 serving a schema for any path; .requests lists the paths asked."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/schema+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with local_http_server(Handler) as server:
        server.url = f"http://127.0.0.1:{server.server_port}"
        server.requests = requests
        yield server


def plan_with(url: str) -> dict:
    return {"name": "refs", "parallel_execution": {"tasks": [
        {"id": "api", "worker": "shell", "command": ["python", "-c", "print('{\"token\": 1}')"],
         "output_schema": {"type": "object", "properties": {"token": {"$ref": f"{url}/token.json"}}}},
        {"id": "ui", "worker": "shell", "command": ["python", "-c", "print('{\"user\": 1}')"]}]},
        "contracts": {"auth": {"provider": "api", "consumer": "ui", "specification": {
            "response": {"$id": f"{url}/root.json", "type": "object", "properties": {"user": {"$ref": "user.json"}}}}}}}


@pytest.mark.django_db
def test_an_upload_with_remote_refs_is_refused_located_and_fetches_nothing(logged_in_client, schema_server):
    text = yaml.safe_dump(plan_with(schema_server.url), sort_keys=False)
    response = logged_in_client.post("/plans/import/", {"file": SimpleUploadedFile("refs.yaml", text.encode())})
    page = response.content.decode()
    assert response.status_code == 400 and not Plan.objects.exists()
    assert "parallel_execution.tasks[0].output_schema.properties.token.$ref:" in page
    assert "contracts.auth.specification.response.properties.user.$ref:" in page
    assert page.count("never fetches schemas over the network") == 2 and "#/$defs/" in page
    assert schema_server.requests == []


@pytest.mark.django_db
def test_the_editor_validating_as_you_type_fetches_nothing(logged_in_client, schema_server):
    task = {"id": "api", "worker": "shell", "command": "python -V",
            "output_schema": json.dumps({"$ref": f"{schema_server.url}/token.json"})}
    page = logged_in_client.post("/plans/new/", form(tasks=[task], action="validate")).content.decode()
    start = page.index('id="err-tasks-0-output_schema"')
    assert "never fetches schemas over the network" in page[start:page.index("</ul>", start)]
    assert schema_server.requests == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_running_a_stored_plan_with_remote_refs_fetches_nothing_and_says_why_it_failed(schema_server):
    doc = plan_with(schema_server.url)
    doc["parallel_execution"]["tasks"][1]["output_schema"] = "contracts.auth.response"
    plan = await sync_to_async(store_unchecked)(doc)
    run = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    tasks = {t.task_id: t for t in await sync_to_async(list)(run.task_runs.all())}
    assert tasks["api"].state == "failed" and tasks["ui"].state == "failed"
    assert f"{schema_server.url}/token.json' points outside it" in tasks["api"].error
    assert "'user.json' points outside it" in tasks["ui"].error
    assert schema_server.requests == []


def test_references_inside_the_schema_are_kept_and_only_the_outside_ones_are_named():
    schema = {
        "$id": "https://example.com/root.json",
        "$defs": {"user": {"type": "object"}, "item": {"$id": "item.json", "type": "string"}},
        "properties": {
            "a": {"$ref": "#/$defs/user"}, "b": {"$ref": "item.json"}, "c": {"$ref": "https://example.com/root.json#/$defs/user"},
            "$ref": {"type": "string"},  # a property named "$ref"
            "d": {"enum": [{"$ref": "https://example.com/data-not-schema"}]},
            "e": {"$ref": "other.json"}, "f": {"items": [{"$dynamicRef": "file:///etc/passwd"}]},
        },
    }
    assert remote_refs(schema) == [(["properties", "e", "$ref"], "other.json"),
                                   (["properties", "f", "items", 0, "$dynamicRef"], "file:///etc/passwd")]
    assert remote_refs({"$ref": "#"}) == [] and remote_refs({"$ref": "#/definitions/x"}) == []
