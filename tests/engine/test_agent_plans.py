"""The seed's login plan through the whole engine, with the real agent CLIs and a fake model."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_plan
from tests.fakes.model_server import Fail, Text, WriteFile

pytestmark = [pytest.mark.cli, pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

LOGIN_PLAN = (Path(__file__).resolve().parents[2] / "examples" / "login-feature.yaml").read_text()


async def run_login_plan():
    return await run_plan(LOGIN_PLAN, "login-feature.yaml")


async def test_the_login_plan_runs_each_task_with_its_cli_and_hands_results_downstream(model, data_dir):
    model.when("Verify frontend-backend integration", Text("APPROVE: the component posts {email, password} as the contract says"))
    model.when("Build React login component", WriteFile("Login.jsx", "export default function Login() { return null }\n"))
    model.when("Build authentication API", Text("POST /api/auth/login returns {token, user} - endpoint ready"))
    model.when("Write auth documentation", Text("# Authentication\nPOST /api/auth/login"))

    run, t = await run_login_plan()

    assert {k: v.state for k, v in t.items()} == dict.fromkeys(["frontend", "backend", "docs", "integration"], "succeeded")
    assert (t["frontend"].worker, t["backend"].worker, t["integration"].worker) == ("gemini", "codex", "claude")
    assert (data_dir / "runs" / str(run.pk) / "frontend" / "attempt-1" / "work" / "Login.jsx").read_text().startswith("export default")
    assert t["integration"].result.startswith("APPROVE")
    # The integration task's prompt carried both upstream results; the builders got the contract.
    integration_prompt = next(p for p in model.prompts() if "Verify frontend-backend integration" in p)
    assert "endpoint ready" in integration_prompt and "## Result of upstream task frontend" in integration_prompt
    frontend_prompt = next(p for p in model.prompts() if "Build React login component" in p)
    assert "Contract 'auth_api' (you consume it" in frontend_prompt and '"minLength": 8' in frontend_prompt
    # Usage as the CLIs report it: claude gives a cost, every CLI gives tokens.
    assert t["integration"].cost_usd is not None and all(x.input_tokens for x in t.values())
    assert run.state == "succeeded"


async def test_an_api_error_fails_the_task_with_its_message_and_skips_what_depends_on_it(model):
    model.when("Build authentication API", Fail(400, "context window exceeded for this request"))
    run, t = await run_login_plan()
    assert t["backend"].state == "failed"
    assert "context window exceeded for this request" in t["backend"].error
    assert t["integration"].state == "skipped" and "'backend'" in t["integration"].state_reason
    assert t["frontend"].state == "succeeded" and t["docs"].state == "succeeded"
    assert run.state == "failed"


def login_plan_with_checked_backend() -> str:
    import yaml

    doc = yaml.safe_load(LOGIN_PLAN)
    backend = next(t for t in doc["parallel_execution"]["tasks"] if t["id"] == "backend")
    backend["output_schema"] = "contracts.auth_api.response.success"
    doc["contracts"]["auth_api"]["specification"]["response"]["success"]["required"] = ["token", "user"]
    return yaml.safe_dump(doc, sort_keys=False)


async def run_checked_login_plan():
    return await run_plan(login_plan_with_checked_backend(), "login-checked.yaml")


async def test_provider_output_that_meets_the_contract_passes(model):
    model.when("Build authentication API", Text('{"token": "t-123", "user": {"id": "u1", "email": "a@b.c"}}'))
    run, t = await run_checked_login_plan()
    assert t["backend"].state == "succeeded", t["backend"].error
    assert '"token": "t-123"' in next(p for p in model.prompts() if "Verify frontend-backend integration" in p)
    assert run.state == "succeeded"


async def test_provider_output_without_a_token_fails_with_the_pointer_of_the_fault(model):
    model.when("Build authentication API", Text('{"user": {"id": "u1", "email": "a@b.c"}}'))
    run, t = await run_checked_login_plan()
    assert t["backend"].state == "failed"
    assert "does not match contracts.auth_api.response.success" in t["backend"].error
    assert "/: 'token' is a required property" in t["backend"].error
    assert t["integration"].state == "skipped" and run.state == "failed"
