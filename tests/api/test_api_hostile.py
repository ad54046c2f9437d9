"""API, token page, inputs and MCP bugs found by hostile testing."""

import json

import httpx
import pytest
from asgiref.sync import sync_to_async

from orchestration.api import tokens
from orchestration.engine.scheduler import cancel_run, start_run
from orchestration.models import AuditEvent
from orchestration.plans.inputs import InputsRefused
from tests.conftest import make_plan, py, user_in

pytestmark = pytest.mark.django_db(transaction=True)

PLAN = json.dumps({"name": "P", "inputs": {"who": {"default": "x"}}, "parallel_execution": {"tasks": [
    {"id": "hello", "worker": "shell", "command": py("import sys; print(sys.argv[1])") + ["{{ inputs.who }}"]}]}})


def bearer(django_user_model, name, *roles):
    user = user_in(django_user_model, name, *roles)
    _, secret = tokens.issue(user, "ci")
    return user, {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def test_revoking_with_a_unicode_digit_is_a_400_not_a_500(client, django_user_model):
    """'²'.isdigit() is True but int('²') raises: views/account.py:22 crashes (500)."""
    user = user_in(django_user_model, "v", "Viewers")
    client.force_login(user)
    client.raise_request_exception = False
    response = client.post("/account/tokens/", {"action": "revoke", "token": "\u00b2"})
    assert response.status_code in (302, 400), response.status_code


def test_a_rerun_through_the_api_is_audited_as_done_via_the_token(client, django_user_model):
    """Module doc: 'What a token does is audited as "<user> via token '<name>'"'; start and
    cancel are, but rerun_run (api/main.py) passes no `via` (scheduler.rerun takes none)."""
    _, headers = bearer(django_user_model, "op", "Operators")
    run = start_run(make_plan(PLAN))
    cancel_run(run.pk, "ended")
    response = client.post(f"/api/runs/{run.pk}/rerun", data="{}", content_type="application/json", **headers)
    assert response.status_code == 201
    actors = list(AuditEvent.objects.filter(run_id=response.json()["run"]["id"]).values_list("actor_name", flat=True))
    assert actors and all("via token 'ci'" in a for a in actors), actors


def test_an_input_that_cannot_be_encoded_is_refused_at_the_start():
    """A lone surrogate (valid in JSON: "\\ud800") is accepted by inputs.resolve, the run starts,
    and its task fails later: "could not start …: surrogates not allowed". Like a NUL, it
    should be refused up front (InputsRefused, a 400 from the API)."""
    plan = make_plan(PLAN)
    with pytest.raises(InputsRefused):
        start_run(plan, inputs={"who": "a\ud800b"})


@pytest.mark.parametrize("method, path", [("get", "/api/no-such-endpoint"), ("delete", "/api/plans")])
def test_every_api_error_is_json_with_a_message(client, django_user_model, method, path):
    """Module doc: 'Errors are JSON: {"message": …, "field": …}'. An unknown path answers
    Django's HTML 404 and a wrong method a text/plain 'Method not allowed'."""
    _, headers = bearer(django_user_model, "v", "Viewers")
    response = getattr(client, method)(path, **headers)
    assert response["Content-Type"].startswith("application/json"), (response.status_code, response.content[:80])
    assert "message" in response.json()


def test_a_bad_input_type_names_the_input_as_its_field(client, django_user_model):
    """A list as an input value: field is "inputs.who.str" (pydantic's union branch), not "inputs.who"."""
    _, headers = bearer(django_user_model, "op", "Operators")
    plan = make_plan(PLAN)
    response = client.post(f"/api/plans/{plan.pk}/runs", data=json.dumps({"inputs": {"who": ["a"]}}),
                           content_type="application/json", **headers)
    assert response.status_code == 422 and response.json()["field"] == "inputs.who", response.json()


@pytest.mark.asyncio
async def test_mcp_accepts_an_origin_of_an_allowed_host_on_the_default_port(django_user_model, settings):
    """Behind a proxy at https://magicbox.example (ALLOWED_HOSTS=magicbox.example) a browser sends
    Origin: https://magicbox.example, without a port. The allowed origins are only
    'https://magicbox.example:*' (mcp_server.py StreamableHttp._start): 403 Invalid Origin."""
    from magicbox_web.asgi import application
    user = await sync_to_async(user_in)(django_user_model, "vw", "Viewers")
    _, secret = await sync_to_async(tokens.issue)(user, "b")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "run_status", "arguments": {"run_id": 1}}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {secret}",
               "Origin": "http://127.0.0.1"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://127.0.0.1") as client:
        response = await client.post("/mcp/", json=body, headers=headers)
    assert response.status_code == 200, (response.status_code, response.text)


@pytest.mark.asyncio
async def test_mcp_start_plan_with_both_text_and_plan_is_refused(django_user_model):
    """start_plan(text=…, plan='P') silently imports and starts `text`, ignoring `plan`."""
    from mcp import Client

    from orchestration.api.mcp_server import acting, server
    acting.set(await sync_to_async(user_in)(django_user_model, "agent", "Authors", "Operators"))
    await sync_to_async(make_plan)(PLAN)
    other = PLAN.replace('"name": "P"', '"name": "Other"')
    async with Client(server) as client:
        result = await client.call_tool("start_plan", {"text": other, "plan": "P", "inputs": {"who": "x"}})
    assert result.is_error and "not both" in result.content[0].text


def test_the_page_showing_a_new_tokens_secret_is_not_stored(client, django_user_model):
    """The response carrying the once-shown secret has no Cache-Control: no-store, so the browser
    (back/forward cache, disk cache of a shared machine) may keep the secret."""
    client.force_login(user_in(django_user_model, "v", "Viewers"))
    response = client.post("/account/tokens/", {"action": "create", "name": "laptop"})
    assert b"mbx_" in response.content
    assert "no-store" in (response.get("Cache-Control") or ""), response.get("Cache-Control")

