"""The MCP server over streamable HTTP at /mcp/ on the running app, with a token made in the
browser: refused without it; with it, an agent validates, starts, follows and reads a plan."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.browser

PLAN = json.dumps({"name": "Over MCP HTTP", "parallel_execution": {"tasks": [
    {"id": "hi", "worker": "shell", "command": ["python", "-c", "print('hi over http')"]}]}})


def make_token(page, url: str) -> str:
    page.goto(f"{url}/account/tokens/")
    page.fill("#make-token input[name=name]", f"mcp-{time.monotonic_ns()}")
    page.click("#make-token button[type=submit]")
    return page.inner_text("#new-token-secret").strip()


async def session(url: str, token: str):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with Client(streamable_http_client(f"{url}/mcp/", http_client=http)) as client:
            def data(result):
                return result.structured_content if result.structured_content is not None else json.loads(result.content[0].text)

            assert data(await client.call_tool("validate_plan", {"text": PLAN}))["valid"]
            started = data(await client.call_tool("start_plan", {"text": PLAN}))
            deadline = time.monotonic() + 60
            while not (status := data(await client.call_tool("run_status", {"run_id": started["run_id"]})))["done"]:
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.2)
            return status, data(await client.call_tool("run_results", {"run_id": started["run_id"]}))


def test_an_agent_uses_the_mcp_server_over_http_with_a_token(page, stack):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{stack.url}/mcp/", data=b"{}", headers={"Content-Type": "application/json"}))
    assert refused.value.code == 401
    token = make_token(page, stack.url)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
        status, results = pool.submit(asyncio.run, session(stack.url, token)).result(timeout=120)
    assert status["run"]["state"] == "succeeded" and results["tasks"][0]["result"].strip() == "hi over http"
