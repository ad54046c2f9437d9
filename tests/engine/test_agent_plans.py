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


def installed_version(package: str) -> str:
    """The version of an npm package in the repository's node_modules (what the CLIs must report)."""
    import json

    return json.loads((Path(__file__).resolve().parents[2] / "node_modules" / package / "package.json").read_text())["version"]


async def test_each_task_run_records_its_cli_version_and_model_and_shows_them(model, monkeypatch, async_client, user):
    import io
    import json
    import zipfile

    from asgiref.sync import sync_to_async

    from orchestration.workers import identity

    identity.forget_versions()  # codex's and gemini's versions come from `<cli> --version`, asked here
    monkeypatch.setenv("CODEX_MODEL", "local-model")  # codex's events never name the model: its variable does
    model.reply(Text("APPROVE: done"))

    run, t = await run_login_plan()

    assert run.state == "succeeded"
    claude_model = {r.body["model"] for r in model.requests if r.provider == "anthropic"}
    gemini_main = {r.path.split("/models/", 1)[1].split(":", 1)[0] for r in model.requests
                   if r.provider == "gemini" and ":streamGenerateContent" in r.path}
    assert len(claude_model) == 1 and len(gemini_main) == 1, (claude_model, gemini_main)
    expected = {
        "integration": (installed_version("@anthropic-ai/claude-code"), claude_model.pop()),
        "backend": (installed_version("@openai/codex"), "local-model"),
        "frontend": (installed_version("@google/gemini-cli"), gemini_main.pop()),  # the model it used, not "auto"
    }
    assert {task: (t[task].cli_version, t[task].model) for task in expected} == expected
    await sync_to_async(async_client.force_login)(user)
    for task, (version, used) in expected.items():  # in the task's detail
        page = (await async_client.get(f"/runs/{run.pk}/?task={task}")).content.decode()
        summary = page.split('class="task-summary"', 1)[1].split("</h2>", 2)[1]
        assert f"v{version} · {used}" in summary
    summary = json.loads((await async_client.get(f"/runs/{run.pk}/summary.json")).content)
    assert {x["id"]: (x["cli_version"], x["model"]) for x in summary["tasks"] if x["id"] in expected} == expected
    response = await async_client.get(f"/runs/{run.pk}/export.zip")
    archived = json.loads(zipfile.ZipFile(io.BytesIO(b"".join([c async for c in response.streaming_content]))).read("summary.json"))
    assert archived["tasks"] == summary["tasks"]
    markdown = (await async_client.get(f"/runs/{run.pk}/summary.md")).content.decode()
    assert f"claude v{expected['integration'][0]} ({expected['integration'][1]})" in markdown
