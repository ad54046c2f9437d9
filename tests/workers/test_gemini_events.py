"""The gemini worker: its command and how its stream-json events (gemini 0.61.0) read for people.

The recordings are real gemini output against the fake model server (see tests/workers/recordings).
"""
from __future__ import annotations

import json

import pytest

from orchestration.workers.base import TaskContext
from orchestration.workers.events import SHOWN_LINE_LIMIT
from orchestration.workers.gemini import DEFAULT_ARGS, GeminiAdapter, GeminiEventParser, used_model
from orchestration.workers.registry import worker_config

# stderr of a real gemini 0.61.0 run that got a 500 (paths shortened).
STDERR_OF_A_500 = """\
Warning: 256-color support not detected. Using a terminal with at least 256-color support is recommended for a better visual experience.
Ripgrep is not available. Falling back to GrepTool.
[STARTUP] Phase 'cleanup_ops' was started but never ended. Skipping metrics.
[STARTUP] Cannot measure phase 'cleanup_ops': start mark 'startup:cleanup_ops:start' not found (likely cleared by reset).
Attempt 1 failed: {"error":{"code":500,"message":"The model is on fire.","status":"INTERNAL"}}. Max attempts reached
Error when talking to Gemini API Full report available at: /tmp/t/gemini-client-error-Turn.run-sendMessageStream-2026-11-30T00-32-33-747Z.json _ApiError: {"error":{"code":500,"message":"The model is on fire.","status":"INTERNAL"}}
    at throwErrorIfNotOK (file:///repo/node_modules/@google/gemini-cli/bundle/chunk-JDPZ4CE3.js:267833:24)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
    at async Turn.run (file:///repo/node_modules/@google/gemini-cli/bundle/chunk-JDPZ4CE3.js:333001:24) {
  status: 500
}"""


def replay(lines: list[str], exit_code: int, stderr: str = "") -> tuple[list[str], object]:
    parser = GeminiEventParser()
    shown = [shown for line in lines for shown in parser.feed_stdout(line)]
    shown += [shown for line in stderr.splitlines() for shown in parser.feed_stderr(line)]
    return shown, parser.finish(exit_code, stderr)


def message(text: str) -> str:
    return json.dumps({"type": "message", "role": "assistant", "content": text, "delta": True})


# --- reading events ---------------------------------------------------------------------------


def test_a_text_answer_becomes_the_result_with_tokens_and_session_but_no_cost(recording):
    lines = recording("gemini-text")
    session_id = json.loads(lines[0])["session_id"]

    shown, outcome = replay(lines, 0)

    assert outcome.succeeded
    assert outcome.result == "The capital of France is Paris."
    assert outcome.cost_usd is None
    assert (outcome.input_tokens, outcome.output_tokens) == (2400, 60)  # the routing call counts too
    assert outcome.session_id == session_id
    assert shown == [
        f"gemini started (model auto, session {session_id})",
        "The capital of France is Paris.",
        "gemini finished (model gemini-3.8-flash, 2,400 in / 60 out tokens)",
    ]


@pytest.mark.parametrize(("configured", "models", "expected"), [
    ("auto", {"gemini-3.5-flash-lite": {"total_tokens": 9}, "gemini-3.8-flash": {"total_tokens": 0}}, "gemini-3.8-flash"),
    ("gemini-2.5-pro", {"gemini-3.5-flash-lite": {"total_tokens": 9}, "gemini-2.5-pro": {"total_tokens": 5}}, "gemini-2.5-pro"),
    ("auto", {"gemini-3.5-flash-lite": {"total_tokens": 9}}, "gemini-3.5-flash-lite"),
    ("auto", {"a-pro": {"total_tokens": 1}, "b-flash": {"total_tokens": 7}}, "b-flash, a-pro"),
    ("auto", None, "auto"),
])
def test_the_model_recorded_is_the_one_gemini_used_not_its_router(configured, models, expected):
    assert used_model(configured, models) == expected


def test_a_failed_call_still_names_the_model_gemini_routed_to(recording):
    _, outcome = replay(recording("gemini-api-error-500"), 244, STDERR_OF_A_500)

    assert outcome.model == "gemini-3.8-flash"
    assert outcome.cli_version == ""  # gemini's events do not say; the engine asks `gemini --version`


def test_a_file_write_shows_the_tool_call_and_its_result(recording):
    shown, outcome = replay(recording("gemini-write-file"), 0)

    assert outcome.succeeded
    assert outcome.result == "I wrote src/greet.py."
    assert shown[1:4] == ["→ write_file src/greet.py", "  ← ok", "I wrote src/greet.py."]


def test_an_api_error_names_its_status_and_message_and_stderr_noise_is_hidden(recording):
    shown, outcome = replay(recording("gemini-api-error-500"), 244, STDERR_OF_A_500)

    assert not outcome.succeeded
    assert outcome.error == "gemini API error 500: The model is on fire. (INTERNAL)"
    assert outcome.session_id
    assert "gemini API error 500: The model is on fire. (INTERNAL)" in shown
    assert not any("256-color" in line or "Ripgrep" in line or "[STARTUP]" in line for line in shown)
    assert not any(line.strip().startswith("at ") or line.strip() in ("}", "status: 500") for line in shown)
    assert any(line.startswith("Error when talking to Gemini API") for line in shown)


def test_a_400_names_its_status_and_message(recording):
    _, outcome = replay(recording("gemini-api-error-400"), 144)

    assert outcome.error == "gemini API error 400: The model is on fire. (INVALID_ARGUMENT)"


def test_the_result_event_decides_over_the_exit_code(recording):
    _, good_but_nonzero = replay(recording("gemini-text"), 1)
    _, error_but_zero = replay(recording("gemini-api-error-400"), 0)

    assert good_but_nonzero.succeeded
    assert not error_but_zero.succeeded


def test_without_a_result_event_the_exit_code_is_explained_with_stderr():
    _, outcome = replay([], 41, "Invalid auth method selected.")

    assert not outcome.succeeded
    assert outcome.error.startswith("gemini: authentication failed or no usable auth method is selected (exit 41).")
    assert "gemini exited with code 41 without reporting a result event" in outcome.error
    assert "Invalid auth method selected." in outcome.error


def test_an_untrusted_folder_is_named():
    _, outcome = replay([], 55, "")

    assert "not trusted" in outcome.error


def test_text_chunks_are_joined_and_shown_as_whole_lines(recording):
    lines = recording("gemini-text")
    chunks = [message("Hel"), message("lo\nWor"), message("ld, and"), message(" more.")]

    shown, outcome = replay([lines[0], *chunks, lines[-1]], 0)

    assert shown[1:3] == ["Hello", "World, and more."]
    assert outcome.result == "Hello\nWorld, and more."


def test_the_result_is_the_text_after_the_last_tool_call(recording):
    lines = recording("gemini-write-file")
    stream = [lines[0], message("I will write the file.\n"), *lines[2:]]

    shown, outcome = replay(stream, 0)

    assert shown[1] == "I will write the file."
    assert outcome.result == "I wrote src/greet.py."


def test_a_failed_tool_and_a_warning_are_shown():
    parser = GeminiEventParser()

    error = {"type": "invalid_tool_params", "message": "Path must be inside the workspace"}
    failed = parser.feed_stdout(json.dumps({"type": "tool_result", "tool_id": "t1", "status": "error", "error": error}))
    warning = parser.feed_stdout(json.dumps({"type": "error", "severity": "warning", "message": "Loop detected"}))

    assert failed == ["  ← error: Path must be inside the workspace"]
    assert warning == ["warning: Loop detected"]


def test_a_megabyte_long_line_and_noise_lines_are_handled(recording):
    lines = recording("gemini-text")
    big = "q" * 1_100_000

    shown, outcome = replay([lines[0], "not json at all", "", message(big), lines[-1]], 0)

    assert outcome.succeeded
    assert outcome.result == big
    assert "not json at all" in shown
    assert all(len(line) <= SHOWN_LINE_LIMIT for line in shown)


# --- the command it builds --------------------------------------------------------------------


@pytest.fixture
def gemini_ctx(task_dirs):
    return TaskContext(
        task_id="t1", prompt="Build the thing.", command=None, workdir=task_dirs["work"], home=task_dirs["home"],
        tmpdir=task_dirs["tmp"], upstream_dir=task_dirs["upstream"],
        base_env={"PATH": "/usr/bin:/bin", "GEMINI_API_KEY": "g", "CLAUDE_CODE_ENTRYPOINT": "cli"},
    )


def test_gemini_gets_the_prompt_on_stdin_auto_edit_and_a_trusted_workdir(stand_in_clis, gemini_ctx):
    invocation = GeminiAdapter(worker_config("gemini"), [str(stand_in_clis)]).build(gemini_ctx)

    assert invocation.argv == [str(stand_in_clis / "gemini"), *DEFAULT_ARGS]
    assert DEFAULT_ARGS == ["--output-format", "stream-json", "--approval-mode", "auto_edit"]
    assert invocation.stdin == b"Build the thing."
    assert invocation.cwd == gemini_ctx.workdir
    assert invocation.env["HOME"] == str(gemini_ctx.home)
    assert invocation.env["TMPDIR"] == str(gemini_ctx.tmpdir)
    assert invocation.env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
    assert invocation.env["GEMINI_API_KEY"] == "g"
    assert "CLAUDE_CODE_ENTRYPOINT" not in invocation.env


def test_gemini_settings_select_api_key_auth_and_one_attempt(stand_in_clis, gemini_ctx):
    GeminiAdapter(worker_config("gemini"), [str(stand_in_clis)]).build(gemini_ctx)

    settings = json.loads((gemini_ctx.home / ".gemini" / "settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["general"]["maxAttempts"] == 1
    assert settings["privacy"]["usageStatisticsEnabled"] is False


def test_a_429_whose_result_event_lost_the_status_takes_it_from_the_stderr_dump():
    result = {"type": "result", "status": "error",
              "error": {"type": "unknown", "message": "[API Error: Slow down.\nSuggested retry after 1s.]"}}
    stderr = "RetryableQuotaError: Slow down.\n  cause: {\n    code: 429,\n    message: 'Slow down.',\n  },"

    _, outcome = replay([json.dumps(result)], 429 % 256, stderr)
    _, other_exit = replay([json.dumps(result)], 1, stderr)

    assert outcome.error.startswith("gemini API error 429: Slow down.")
    assert "429" not in other_exit.error  # an exit code that does not match: not that status


def test_text_still_unfinished_when_the_output_ends_is_shown_then(recording):
    parser = GeminiEventParser()
    shown = parser.feed_stdout(recording("gemini-text")[0])
    shown += parser.feed_stdout(message("Line one.\nAnd a line cut short by the timeo"))

    assert shown[-1] == "Line one."
    assert parser.end_of_output() == ["And a line cut short by the timeo"]
    assert parser.end_of_output() == []
    assert parser.finish(-1, "").result == "Line one.\nAnd a line cut short by the timeo"


def test_the_unfinished_line_of_a_streamed_answer_is_the_text_being_written():
    parser = GeminiEventParser()
    chunk = lambda text: json.dumps({"type": "message", "role": "assistant", "content": text, "delta": True})  # noqa: E731
    assert parser.feed_stdout(chunk("First line\nSecond ")) == ["First line"]
    assert parser.partial_text(1000) == "Second "
    assert parser.feed_stdout(chunk("line\n")) == ["Second line"]
    assert parser.partial_text(1000) == ""
