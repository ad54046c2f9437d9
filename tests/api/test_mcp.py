"""Magic Box as an MCP server: a session through the SDK's own client validates, starts and
follows a plan and reads its results; over stdio (`manage.py mcp`) too; and the real claude CLI,
configured with the server, is offered its tools and calls one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from orchestration.api.mcp_server import acting, server
from tests.conftest import drain_engine, py, user_in
from tests.engine.conftest import test_database_url

pytestmark = [pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
PLAN = json.dumps({"name": "From an agent", "inputs": {"who": {"required": True}}, "parallel_execution": {"tasks": [
    {"id": "greet", "worker": "shell", "command": py("import sys; print('hello', sys.argv[1])") + ["{{ inputs.who }}"]}]}})


def structured(result) -> dict:
    return result.structured_content if result.structured_content is not None else json.loads(result.content[0].text)


@pytest.mark.asyncio
async def test_an_agent_validates_starts_follows_and_reads_a_plan(django_user_model):
    operator = await sync_to_async(user_in)(django_user_model, "agent", "Authors", "Operators")
    acting.set(operator)
    async with Client(server) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"validate_plan", "start_plan", "run_status", "run_results", "cancel_run"} <= names
        bad = structured(await client.call_tool("validate_plan", {"text": PLAN.replace('"shell"', '"shel"')}))
        assert bad["valid"] is False and "unknown worker 'shel'" in bad["problems"][0]["message"]
        good = structured(await client.call_tool("validate_plan", {"text": PLAN}))
        assert good["valid"] and good["tasks"] == ["greet"] and good["inputs"] == ["who"]
        refused = structured(await client.call_tool("start_plan", {"text": PLAN}))
        assert refused["started"] is False and refused["problems"][0]["field"] == "inputs.who"
        started = structured(await client.call_tool("start_plan", {"plan": "From an agent", "inputs": {"who": "agent"}}))
        assert started["started"], started
        await drain_engine()
        status = structured(await client.call_tool("run_status", {"run_id": started["run_id"]}))
        assert status["done"] and status["run"]["state"] == "succeeded" and status["tasks"][0]["state"] == "succeeded"
        results = structured(await client.call_tool("run_results", {"run_id": started["run_id"]}))
        assert results["tasks"][0]["result"].strip() == "hello agent"


@pytest.mark.asyncio
async def test_a_viewer_cannot_start_runs_through_the_tools(django_user_model):
    acting.set(await sync_to_async(user_in)(django_user_model, "watcher", "Viewers"))
    async with Client(server) as client:
        refused = await client.call_tool("start_plan", {"text": PLAN})
        assert refused.is_error and "watcher may not start runs: that needs the Operator role" in refused.content[0].text


def mcp_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env["DATABASE_URL"] = test_database_url()
    return env


@pytest.mark.asyncio
async def test_over_stdio_manage_py_mcp_serves_the_same_tools(django_user_model):
    await sync_to_async(user_in)(django_user_model, "stdio", "Viewers")
    params = StdioServerParameters(command=sys.executable, args=[str(ROOT / "manage.py"), "mcp", "--user", "stdio"], env=mcp_env(),
                                   cwd=str(ROOT))
    async with Client(params) as client:
        checked = structured(await client.call_tool("validate_plan", {"text": PLAN}))
    assert checked["valid"] and checked["tasks"] == ["greet"]


def tool_results(body: dict) -> list[str]:
    """The text of every tool result in an Anthropic Messages request body."""
    found = []
    for message in body.get("messages") or []:
        for block in message.get("content") if isinstance(message.get("content"), list) else ():
            if block.get("type") == "tool_result":
                content = block.get("content")
                found += [content] if isinstance(content, str) else [c.get("text", "") for c in content or []]
    return found


@pytest.mark.cli
def test_the_claude_cli_configured_with_the_server_lists_its_tools_and_validates_a_plan_with_them(agent_clis, model_server,
                                                                                                 django_user_model, tmp_path):
    from tests.fakes.model_server import CallTool

    user_in(django_user_model, "cli", "Viewers")
    # MCP_CONNECTION_NONBLOCKING=0: claude -p connects its MCP servers before the first request
    # (by default it may ask the model while they still connect, and offer their tools later).
    env = {**mcp_env(), "HOME": str(tmp_path), **model_server.client_env("claude"), "MCP_CONNECTION_NONBLOCKING": "0"}
    claude = str(agent_clis / "claude")
    subprocess.run([claude, "mcp", "add", "magicbox", "--", sys.executable, str(ROOT / "manage.py"), "mcp", "--user", "cli"],
                   env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    listed = subprocess.run([claude, "mcp", "list"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "magicbox" in listed.stdout and "Connected" in listed.stdout, listed.stdout + listed.stderr

    model_server.reply(CallTool("mcp__magicbox__validate_plan", {"text": PLAN.replace('"shell"', '"shel"')}, then="It has a problem."))
    done = subprocess.run([claude, "-p", "Check my plan with Magic Box", "--output-format", "json",
                           "--allowedTools", "mcp__magicbox__validate_plan"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    turns = [r.body for r in model_server.requests if r.provider == "anthropic" and (r.body or {}).get("tools")]
    offered = {tool.get("name") for tool in turns[0]["tools"]}
    assert {f"mcp__magicbox__{name}" for name in ("validate_plan", "start_plan", "run_status", "run_results", "cancel_run")} <= offered, offered
    results = tool_results(turns[-1])
    assert any("unknown worker 'shel'" in text for text in results), results
    assert json.loads(done.stdout)["result"] == "It has a problem."


@pytest.mark.asyncio
async def test_a_role_removed_while_the_server_runs_takes_effect_at_once(django_user_model):
    user = await sync_to_async(user_in)(django_user_model, "demoted", "Authors", "Operators")
    acting.set(user)
    async with Client(server) as client:
        assert structured(await client.call_tool("validate_plan", {"text": PLAN}))["valid"]
        await sync_to_async(lambda: user.groups.clear())()
        refused = await client.call_tool("validate_plan", {"text": PLAN})
        assert refused.is_error and "demoted may not use Magic Box" in refused.content[0].text
