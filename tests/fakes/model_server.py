"""A fake model server for the agent CLIs: Anthropic, OpenAI Responses and Gemini APIs on 127.0.0.1.

It speaks just enough of each provider's streaming HTTP API for the real CLIs to run a task:

- Anthropic Messages: ``POST /v1/messages`` (SSE when ``stream`` is true, JSON otherwise), used by
  ``claude`` (set ``ANTHROPIC_BASE_URL`` to ``server.base_url``).
- OpenAI Responses: ``POST /v1/responses`` (SSE), used by ``codex`` through a custom provider
  whose ``base_url`` is ``server.base_url + "/v1"``.
- Gemini: ``POST /v1beta/models/MODEL:streamGenerateContent?alt=sse`` (SSE) and
  ``:generateContent`` (JSON), used by ``gemini`` (set ``GOOGLE_GEMINI_BASE_URL``).

A test scripts the replies. Each reply is one of:

- ``Text("answer")``: the model answers with that text.
- ``WriteFile("dir/name.txt", "content", then="Done.")``: the model calls the CLI's file-writing
  tool (claude ``Write``; codex ``apply_patch``, inside its JavaScript ``exec`` tool for its
  default model, or a shell command through ``exec_command`` for models without apply_patch;
  gemini ``write_file``); once the CLI sends the tool's result back, the model answers ``then``.
- ``RunCommand("cat x", then="Done.")``: codex runs the command with its shell tool (models
  without apply_patch, e.g. CODEX_MODEL=local-model).
- ``Fail(500, "message")``: the HTTP request fails with that status and the provider's error body
  (claude also gets ``x-should-retry: false``, so it does not retry). ``Fail(429, "message",
  invite_retry=True)`` invites retries instead, as real providers do: ``retry-after: 1`` and
  ``x-should-retry: true`` headers for every provider, and a ``RetryInfo`` detail for gemini.

``server.client_env("claude" | "codex" | "gemini")`` gives the environment variables (the
workers' passthrough variables) that point that CLI at the server.

``server.reply(r)`` sets the default reply (``Text("OK")`` until set); ``server.when("words in the prompt", r)`` adds a rule
matched (substring, first match wins) against the last user message of each request, so one
server can serve several tasks of a plan. Every request is recorded in ``server.requests``
(``RecordedRequest``: provider, path, headers, JSON body, prompt text), and ``server.prompts()``
lists the prompts that reached the model. gemini's internal JSON calls (its model router) are
answered with a minimal valid JSON object whatever the script says.

Usage::

    with ModelServer() as server:
        server.reply(Text("hello"))
        ... run a CLI against server.base_url ...
        assert "my prompt" in server.prompts()[0]
"""
from __future__ import annotations

import gzip
import json
import posixpath
import re
import shlex
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Token counts the fake model reports for every answer (tests assert on them).
INPUT_TOKENS = 1200
OUTPUT_TOKENS = 30


@dataclass(frozen=True)
class Text:
    """The model answers with `text`, streamed in `pieces` deltas sent `delay` seconds apart
    (a slow model whose answer a viewer can watch grow, or one that outlasts a task's timeout)."""

    text: str
    pieces: int = 1
    delay: float = 0.0


def _split(text: str, pieces: int) -> list[str]:
    """`text` cut into `pieces` consecutive non-empty parts (fewer when it is shorter)."""
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _pacing(reply: object) -> tuple[int, float]:
    return (reply.pieces, reply.delay) if isinstance(reply, Text) else (1, 0.0)


@dataclass(frozen=True)
class WriteFile:
    """The model writes `content` to `path` (relative to the CLI's working directory), then says `then`."""

    path: str
    content: str
    then: str = "I wrote the file."


@dataclass(frozen=True)
class RunCommand:
    """The model runs `command` with the CLI's shell tool (codex only, through ``exec_command``:
    set CODEX_MODEL=local-model), then says `then`. What the command printed goes back to the
    server in the next request (see ``ModelServer.requests``)."""

    command: str
    then: str = "I ran the command."


@dataclass(frozen=True)
class Fail:
    """The request fails with HTTP `status` and an error body carrying `message`; with
    `invite_retry` the response asks the client to retry in 1 s (headers and, for gemini, body)."""

    status: int
    message: str
    invite_retry: bool = False

    def headers(self) -> dict[str, str]:
        """The retry headers of the error response."""
        if self.invite_retry:
            return {"retry-after": "1", "x-should-retry": "true"}
        return {}


@dataclass(frozen=True)
class CallTool:
    """The model calls the tool `name` the CLI offered (claude only: an MCP server's tools are
    offered as ``mcp__<server>__<tool>``) with `arguments`, then says `then`. The tool's result
    goes back to the server in the next request (see ``ModelServer.requests``)."""

    name: str
    arguments: dict
    then: str = "I called the tool."


Reply = Text | WriteFile | RunCommand | Fail | CallTool


@dataclass
class RecordedRequest:
    """One request the server got. provider: "anthropic", "openai", "gemini" or "other"."""

    provider: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    prompt: str
    reply: Reply | None = None


@dataclass
class _Rule:
    contains: str
    reply: Reply


@dataclass
class ModelServer:
    """The fake server. Use as a context manager (or call start()/stop()); see the module docstring."""

    default: Reply = field(default_factory=lambda: Text("OK"))
    rules: list[_Rule] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # --- scripting ------------------------------------------------------------------------

    def reply(self, reply: Reply) -> ModelServer:
        """Answer every request no rule matches with `reply`."""
        self.default = reply
        return self

    def when(self, contains: str, reply: Reply) -> ModelServer:
        """Answer requests whose last user message contains `contains` with `reply`."""
        self.rules.append(_Rule(contains, reply))
        return self

    def choose(self, prompt: str) -> Reply:
        """The reply for a request whose last user message is `prompt`."""
        for rule in self.rules:
            if rule.contains in prompt:
                return rule.reply
        return self.default

    def prompts(self) -> list[str]:
        """The prompts (last user messages) of the recorded model requests, in order."""
        return [r.prompt for r in self.requests if r.provider != "other"]

    def client_env(self, cli: str) -> dict[str, str]:
        """The variables that point `cli` ("claude", "codex" or "gemini") at this server, with fake keys.

        They are the workers' env_passthrough variables, so an engine test can put them in the
        server's environment (or a TaskContext's base_env).
        """
        envs = {
            "claude": {"ANTHROPIC_API_KEY": "sk-ant-fake", "ANTHROPIC_BASE_URL": self.base_url},
            "codex": {"OPENAI_API_KEY": "sk-fake", "CODEX_PROVIDER_BASE_URL": self.base_url + "/v1"},
            "gemini": {"GEMINI_API_KEY": "fake-gemini-key", "GOOGLE_GEMINI_BASE_URL": self.base_url},
        }
        return dict(envs[cli])

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        assert self._httpd is not None, "the server is not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> ModelServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # A short poll interval makes stop() quick (shutdown() waits for the next poll).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-model-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


# --- request helpers ------------------------------------------------------------------------


def _anthropic_prompt(body: dict) -> tuple[str, bool]:
    """(text of the last user message that is not only tool results, whether a tool result followed it)."""
    tool_result_after = False
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content, tool_result_after
        texts = [b.get("text", "") for b in content or [] if b.get("type") == "text"]
        if any(b.get("type") == "tool_result" for b in content or []):
            tool_result_after = True
        if texts and not any(b.get("type") == "tool_result" for b in content or []):
            return "\n".join(texts), tool_result_after
    return "", tool_result_after


def _openai_prompt(body: dict) -> tuple[str, bool]:
    items = body.get("input") or []
    if isinstance(items, str):
        return items, False
    tool_result_after = False
    for item in reversed(items):
        kind = item.get("type", "message")
        if kind.endswith("_call_output"):
            tool_result_after = True
            continue
        if kind == "message" and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content, tool_result_after
            texts = [c.get("text", "") for c in content or [] if c.get("type") in ("input_text", "text")]
            return "\n".join(texts), tool_result_after
    return "", tool_result_after


def _gemini_prompt(body: dict) -> tuple[str, bool]:
    tool_result_after = False
    for content in reversed(body.get("contents") or []):
        if content.get("role", "user") != "user":
            continue
        parts = content.get("parts") or []
        if any("functionResponse" in p for p in parts):
            tool_result_after = True
            continue
        texts = [p["text"] for p in parts if "text" in p]
        if texts:
            return "\n".join(texts), tool_result_after
    return "", tool_result_after


class _NoWriteTool(Exception):
    """The CLI offered no tool the fake server knows how to write a file with."""


def _sse(events: list[tuple[str | None, dict]]) -> list[bytes]:
    """The server-sent events, one bytes string each (send them with _Handler._send)."""
    return [(f"event: {name}\n" if name else "").encode() + f"data: {json.dumps(data)}\n\n".encode()
            for name, data in events]


def _apply_patch_text(path: str, content: str) -> str:
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    added = "".join(f"+{line}\n" for line in lines)
    return f"*** Begin Patch\n*** Add File: {path}\n{added}*** End Patch"


class _Handler(BaseHTTPRequestHandler):
    fake: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    # --- plumbing -----------------------------------------------------------------------

    def _read_body(self) -> Any:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        elif encoding:
            raise ValueError(f"the fake model server cannot read {encoding!r} request bodies")
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send(self, status: int, body: bytes | list[bytes], content_type: str, headers: dict[str, str] | None = None,
              delay: float = 0.0) -> None:
        """Send `body` (or its parts, `delay` seconds apart: a slowly streamed answer)."""
        parts = [body] if isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(len(part) for part in parts)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        for i, part in enumerate(parts):
            if i and delay:
                time.sleep(delay)
            self.wfile.write(part)
            self.wfile.flush()

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # a CLI closed its connection (it is done, or it was killed): nothing to answer

    def do_GET(self) -> None:  # noqa: N802
        self._other(None)

    def do_HEAD(self) -> None:  # noqa: N802
        # Connectivity checks (claude sends HEAD /): say the server is there.
        self._record("other", None, "")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        try:
            body = self._read_body()
        except (ValueError, OSError) as e:  # undecodable body: say so to the CLI, which reports it
            self._record("other", None, "")
            self._json(400, {"error": {"code": 400, "message": str(e), "type": "invalid_request_error"}})
            return
        path = self.path.split("?")[0]
        if path.endswith("/v1/messages") and isinstance(body, dict):
            self._anthropic(body)
        elif path.endswith("/v1/messages/count_tokens"):
            self._record("other", body, "")
            self._json(200, {"input_tokens": INPUT_TOKENS})
        elif path.endswith("/responses") and isinstance(body, dict):
            self._openai(body)
        elif re.search(r"/models/[^/]+:(stream)?[gG]enerateContent$", path) and isinstance(body, dict):
            self._gemini(body, stream=":streamGenerateContent" in path)
        elif path.endswith(":countTokens"):
            self._record("other", body, "")
            self._json(200, {"totalTokens": INPUT_TOKENS})
        else:
            self._other(body)

    def _other(self, body: Any) -> None:
        self._record("other", body, "")
        self._json(404, {"error": {"message": f"the fake model server does not serve {self.path}"}})

    def _record(self, provider: str, body: Any, prompt: str, reply: Reply | None = None) -> None:
        self.fake._record(
            RecordedRequest(
                provider=provider,
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                prompt=prompt,
                reply=reply,
            )
        )

    # --- Anthropic Messages ---------------------------------------------------------------

    def _anthropic(self, body: dict) -> None:
        prompt, tool_done = _anthropic_prompt(body)
        reply = self.fake.choose(prompt)
        self._record("anthropic", body, prompt, reply)
        if isinstance(reply, Fail):
            kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                     404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}
            kind = kinds.get(reply.status, "api_error")
            self._json(
                reply.status,
                {"type": "error", "error": {"type": kind, "message": reply.message}},
                {"x-should-retry": "false", "request-id": f"req_fake{self.fake._next_id()}", **reply.headers()},
            )
            return
        n = self.fake._next_id()
        tools = {t.get("name") for t in body.get("tools") or []}
        if isinstance(reply, WriteFile) and not tool_done and "Write" not in tools:
            message = f"claude offered no Write tool to the fake model server: {sorted(map(str, tools))}"
            error = {"type": "error", "error": {"type": "api_error", "message": message}}
            self._json(500, error, {"x-should-retry": "false"})
            return
        if isinstance(reply, CallTool) and not tool_done and reply.name not in tools:
            message = f"claude offered no {reply.name} tool to the fake model server: {sorted(map(str, tools))}"
            self._json(500, {"type": "error", "error": {"type": "api_error", "message": message}}, {"x-should-retry": "false"})
            return
        if isinstance(reply, (WriteFile, CallTool)) and not tool_done:
            name = reply.name if isinstance(reply, CallTool) else "Write"
            block = {"type": "tool_use", "id": f"toolu_fake{n}", "name": name, "input": {}}
            inputs = (reply.arguments if isinstance(reply, CallTool) else
                      {"file_path": _absolute_for_claude(body, reply.path), "content": reply.content})
            delta = [{"type": "input_json_delta", "partial_json": json.dumps(inputs)}]
            stop_reason = "tool_use"
            final_content = [{**block, "input": inputs}]
        else:
            text = reply.then if isinstance(reply, (WriteFile, CallTool)) else reply.text
            block = {"type": "text", "text": ""}
            delta = [{"type": "text_delta", "text": piece} for piece in _split(text, _pacing(reply)[0])]
            stop_reason = "end_turn"
            final_content = [{"type": "text", "text": text}]
        model = body.get("model", "claude-fake")
        usage = {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        message = {"id": f"msg_fake{n}", "type": "message", "role": "assistant", "model": model,
                   "stop_reason": None, "stop_sequence": None}
        if not body.get("stream"):
            self._json(200, {**message, "content": final_content, "stop_reason": stop_reason, "usage": usage})
            return
        events = [
            ("message_start", {"type": "message_start",
                               "message": {**message, "content": [], "usage": {**usage, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            *[("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d}) for d in delta],
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                               "usage": {"output_tokens": OUTPUT_TOKENS}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        self._send(200, _sse(events), "text/event-stream", {"request-id": f"req_fake{n}"}, delay=_pacing(reply)[1])

    # --- OpenAI Responses -----------------------------------------------------------------

    def _openai(self, body: dict) -> None:
        prompt, tool_done = _openai_prompt(body)
        reply = self.fake.choose(prompt)
        self._record("openai", body, prompt, reply)
        if isinstance(reply, Fail):
            kind = "invalid_request_error" if 400 <= reply.status < 500 else "server_error"
            self._json(reply.status, {"error": {"message": reply.message, "type": kind, "param": None, "code": None}},
                       reply.headers())
            return
        n = self.fake._next_id()
        if isinstance(reply, (WriteFile, RunCommand)) and not tool_done:
            try:
                item = _codex_write_call(body, reply, n)
            except _NoWriteTool as e:
                self._json(500, {"error": {"message": str(e), "type": "server_error", "param": None, "code": None}})
                return
        else:
            text = reply.then if isinstance(reply, (WriteFile, RunCommand)) else reply.text
            item = {"type": "message", "id": f"msg_fake{n}", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
        response = {"id": f"resp_fake{n}", "object": "response", "created_at": 0, "status": "in_progress",
                    "model": body.get("model", "gpt-fake"), "output": []}
        events: list[tuple[str | None, dict]] = [
            ("response.created", {"type": "response.created", "sequence_number": 0, "response": response}),
        ]
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events += [
                ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                "item": {**item, "status": "in_progress", "content": []}}),
                ("response.content_part.added", {"type": "response.content_part.added", "item_id": item["id"],
                                                 "output_index": 0, "content_index": 0,
                                                 "part": {"type": "output_text", "text": "", "annotations": []}}),
                *[("response.output_text.delta", {"type": "response.output_text.delta", "item_id": item["id"],
                                                  "output_index": 0, "content_index": 0, "delta": piece})
                  for piece in _split(text, _pacing(reply)[0])],
                ("response.output_text.done", {"type": "response.output_text.done", "item_id": item["id"],
                                               "output_index": 0, "content_index": 0, "text": text}),
                ("response.content_part.done", {"type": "response.content_part.done", "item_id": item["id"],
                                                "output_index": 0, "content_index": 0, "part": item["content"][0]}),
            ]
        else:
            events.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                          "item": item}))
        usage = {"input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
        events += [
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed",
                                    "response": {**response, "status": "completed", "output": [item], "usage": usage}}),
        ]
        self._send(200, _sse(events), "text/event-stream", delay=_pacing(reply)[1])

    # --- Gemini ---------------------------------------------------------------------------

    def _gemini(self, body: dict, stream: bool) -> None:
        prompt, tool_done = _gemini_prompt(body)
        structured = _gemini_structured_answer(body)
        reply = Text(json.dumps(structured)) if structured is not None else self.fake.choose(prompt)
        self._record("gemini", body, prompt, reply)
        if isinstance(reply, Fail):
            status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                      429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(reply.status, "INTERNAL")
            error = {"code": reply.status, "message": reply.message, "status": status}
            if reply.invite_retry:
                error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
            self._json(reply.status, {"error": error}, reply.headers())
            return
        tools = {d.get("name") for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []}
        if isinstance(reply, WriteFile) and not tool_done and "write_file" not in tools:
            message = f"gemini offered no write_file tool to the fake model server: {sorted(map(str, tools))}"
            self._json(500, {"error": {"code": 500, "message": message, "status": "INTERNAL"}})
            return
        if isinstance(reply, WriteFile) and not tool_done:
            part = {"functionCall": {"name": "write_file", "args": {"file_path": reply.path, "content": reply.content}}}
        else:
            part = {"text": reply.then if isinstance(reply, WriteFile) else reply.text}
        model = self.path.split("/models/")[1].split(":")[0]
        chunk = {
            "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": INPUT_TOKENS, "candidatesTokenCount": OUTPUT_TOKENS,
                              "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS},
            "modelVersion": model,
            "responseId": f"fake{self.fake._next_id()}",
        }
        if stream and "text" in part:
            pieces = _split(part["text"], _pacing(reply)[0])
            chunks = [{**chunk, "candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}]}
                      for piece in pieces[:-1]]
            chunks.append({**chunk, "candidates": [{**chunk["candidates"][0],
                                                    "content": {"role": "model", "parts": [{"text": pieces[-1]}]}}]})
            self._send(200, _sse([(None, c) for c in chunks]), "text/event-stream", delay=_pacing(reply)[1])
        elif stream:
            self._send(200, _sse([(None, chunk)]), "text/event-stream")
        else:
            self._json(200, chunk)


def _absolute_for_claude(body: dict, path: str) -> str:
    """claude's Write tool wants an absolute path: join `path` to the working directory it reports."""
    if path.startswith("/"):
        return path
    text = json.dumps(body.get("system", "")) + json.dumps(body.get("messages", []))
    match = re.search(r"(?:Primary working directory|Working directory|cwd):\s*(/[^\s\"\\]+)", text)
    if not match:
        return path
    return match.group(1).rstrip("/") + "/" + path


def _gemini_structured_answer(body: dict) -> Any:
    """gemini-cli's internal JSON calls (the model router's complexity score, ...): a minimal valid answer.

    Returns None for ordinary requests. The answer follows `generationConfig.responseJsonSchema`
    (low numbers, so the router picks the small model).
    """
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if config.get("responseMimeType") != "application/json" and not schema:
        return None
    if not schema:
        return {"reasoning": "A simple task.", "model_choice": "flash"}
    return _example_of(schema)


def _example_of(schema: dict) -> Any:
    kind = str(schema.get("type", "object")).lower()
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _example_of(sub) for name, sub in props.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 10
    if kind == "boolean":
        return False
    return "A simple task."


def _codex_tools(body: dict) -> dict[str, dict]:
    """The tools codex offered, by name: `tools`, plus `additional_tools` input items (namespaces flattened)."""
    found: dict[str, dict] = {}

    def walk(tools: list[dict]) -> None:
        for tool in tools:
            if tool.get("type") == "namespace":
                walk(tool.get("tools") or [])
            elif tool.get("name"):
                found.setdefault(tool["name"], tool)

    walk(body.get("tools") or [])
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            walk(item.get("tools") or [])
    return found


def _codex_write_call(body: dict, reply: WriteFile | RunCommand, n: int) -> dict:
    """The output item that makes codex write `reply.path` (or run `reply.command`) with the tools it offered."""
    tools = _codex_tools(body)
    if isinstance(reply, RunCommand):
        if "exec_command" not in tools:
            raise _NoWriteTool(f"codex offered no shell tool (set CODEX_MODEL=local-model): {sorted(tools)}")
        return {"type": "function_call", "id": f"fc_fake{n}", "status": "completed", "call_id": f"call_fake{n}",
                "name": "exec_command", "arguments": json.dumps({"cmd": reply.command})}
    patch = _apply_patch_text(reply.path, reply.content)
    call_id = f"call_fake{n}"
    if "apply_patch" in tools:
        tool = tools["apply_patch"]
        if tool.get("type") == "custom":
            return {"type": "custom_tool_call", "id": f"ctc_fake{n}", "status": "completed", "call_id": call_id,
                    "name": "apply_patch", "input": patch}
        return {"type": "function_call", "id": f"fc_fake{n}", "status": "completed", "call_id": call_id,
                "name": "apply_patch", "arguments": json.dumps({"input": patch})}
    if "exec" in tools:
        code = f"await tools.apply_patch({json.dumps(patch)});"
        tool = tools["exec"]
        if tool.get("type") == "custom":
            return {"type": "custom_tool_call", "id": f"ctc_fake{n}", "status": "completed", "call_id": call_id,
                    "name": "exec", "input": code}
        return {"type": "function_call", "id": f"fc_fake{n}", "status": "completed", "call_id": call_id,
                "name": "exec", "arguments": json.dumps({"code": code})}
    if "exec_command" in tools:  # models without apply_patch get a shell tool: write with a command
        directory = posixpath.dirname(reply.path)
        command = (f"mkdir -p {shlex.quote(directory)} && " if directory else "") + (
            f"printf %s {shlex.quote(reply.content)} > {shlex.quote(reply.path)}"
        )
        return {"type": "function_call", "id": f"fc_fake{n}", "status": "completed", "call_id": call_id,
                "name": "exec_command", "arguments": json.dumps({"cmd": command})}
    raise _NoWriteTool(f"codex offered no file-writing tool the fake server knows: {sorted(tools)}")
