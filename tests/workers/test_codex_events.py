"""The codex worker: its command and how its `exec --json` events (codex 0.171.0) read for people.

The recordings are real codex output against the fake model server (see tests/workers/recordings).
"""
from __future__ import annotations

import json

import pytest

from orchestration.workers.base import TaskContext
from orchestration.workers.codex import CodexAdapter, CodexEventParser
from orchestration.workers.events import SHOWN_LINE_LIMIT
from orchestration.workers.registry import worker_config


def replay(lines: list[str], exit_code: int, stderr: str = "") -> tuple[list[str], object]:
    parser = CodexEventParser()
    shown = [shown for line in lines for shown in parser.feed_stdout(line)]
    return shown, parser.finish(exit_code, stderr)


# --- reading events ---------------------------------------------------------------------------


def test_a_text_answer_becomes_the_result_with_tokens_and_thread_id_but_no_cost(recording):
    lines = recording("codex-text")
    thread_id = json.loads(lines[0])["thread_id"]

    shown, outcome = replay(lines, 0)

    assert outcome.succeeded
    assert outcome.result == "The capital of France is Paris."
    assert outcome.cost_usd is None
    assert (outcome.input_tokens, outcome.output_tokens) == (1200, 30)
    assert outcome.session_id == thread_id
    assert shown == [
        f"codex started (thread {thread_id})",
        "The capital of France is Paris.",
        "codex finished the turn (1,200 in / 30 out tokens)",
    ]


def test_a_file_change_shows_as_a_write_of_its_path(recording):
    shown, outcome = replay(recording("codex-write-file"), 0)

    assert outcome.succeeded
    assert outcome.result == "I wrote src/greet.py."
    assert (outcome.input_tokens, outcome.output_tokens) == (2400, 60)
    writes = [line for line in shown if line.startswith("→ ")]
    assert len(writes) == 1
    assert writes[0].startswith("→ Write /") and writes[0].endswith("/src/greet.py")


def test_a_shell_command_shows_the_command_and_its_exit_code(recording):
    shown, outcome = replay(recording("codex-write-file-with-shell"), 0)

    assert outcome.succeeded
    assert shown[1].startswith("warning: Model metadata for `local-model` not found.")
    assert shown[2].startswith("→ $ /bin/bash -lc ") and "src/greet.py" in shown[2]
    assert shown[3] == "  ← exit 0"


def test_an_api_error_body_becomes_its_message(recording):
    shown, outcome = replay(recording("codex-api-error-400"), 1)

    assert not outcome.succeeded
    assert outcome.error == "codex API error: The model is on fire. (invalid_request_error)"
    assert shown[-1] == outcome.error
    assert outcome.session_id


def test_a_500_names_its_status_though_codex_hides_the_server_message(recording):
    _, outcome = replay(recording("codex-api-error-500"), 1)

    assert not outcome.succeeded
    assert outcome.error.startswith(
        "codex API error 500: We’re currently experiencing high demand, which may cause temporary errors.")


def test_a_429_names_its_status_though_codex_reports_it_as_a_retry_limit():
    parser = CodexEventParser()
    message = "exceeded retry limit, last status: 429 Too Many Requests"
    parser.feed_stdout(json.dumps({"type": "turn.failed", "error": {"message": message}}))

    assert parser.finish(1, "").error.startswith("codex API error 429: Too Many Requests")


def test_other_statuses_keep_codex_own_wording():
    parser = CodexEventParser()
    message = "unexpected status 503 Service Unavailable: The model is on fire., url: http://127.0.0.1:1/v1/responses"
    parser.feed_stdout(json.dumps({"type": "turn.failed", "error": {"message": message}}))

    outcome = parser.finish(1, "")

    assert outcome.error.startswith("codex failed: unexpected status 503 Service Unavailable: The model is on fire.")


def test_the_turn_events_decide_over_the_exit_code(recording):
    _, good_but_nonzero = replay(recording("codex-text"), 1)
    _, failed_but_zero = replay(recording("codex-api-error-400"), 0)

    assert good_but_nonzero.succeeded
    assert not failed_but_zero.succeeded


def test_without_a_completed_turn_the_task_fails_with_stderr_and_the_last_error(recording):
    started = recording("codex-text")[:2]
    stall = [*started, json.dumps({"type": "error", "message": "Reconnecting... 1/5"})]

    _, outcome = replay(stall, 1, "Reading additional input from stdin...\nError: sandbox setup failed")

    assert not outcome.succeeded
    assert "codex exited with code 1 without reporting a completed turn" in outcome.error
    assert "sandbox setup failed" in outcome.error
    assert "Reading additional input" not in outcome.error
    assert "Reconnecting... 1/5" in outcome.error


def test_tokens_add_up_over_turns(recording):
    lines = recording("codex-text")
    _, outcome = replay([*lines, *lines[1:]], 0)

    assert (outcome.input_tokens, outcome.output_tokens) == (2400, 60)


def test_the_stdin_notice_on_stderr_is_hidden():
    parser = CodexEventParser()

    assert parser.feed_stderr("Reading additional input from stdin...") == []
    assert parser.feed_stderr("thread 'main' panicked") == ["thread 'main' panicked"]


def test_a_megabyte_long_line_and_noise_lines_are_handled(recording):
    lines = recording("codex-text")
    big = "z" * 1_200_000
    message = {"type": "item.completed", "item": {"id": "item_9", "type": "agent_message", "text": big}}
    command = {"type": "item.completed", "item": {"id": "item_8", "type": "command_execution", "command": "cat big",
                                                  "aggregated_output": "y" * 1_000_000, "exit_code": 2,
                                                  "status": "failed"}}
    stream = [lines[0], "plain text noise", "", json.dumps(command), json.dumps(message), lines[-1]]

    shown, outcome = replay(stream, 0)

    assert outcome.succeeded
    assert outcome.result == big
    assert "plain text noise" in shown
    assert any(line.startswith("  ← error: exit 2: yyy") for line in shown)
    assert all(len(line) <= SHOWN_LINE_LIMIT for line in shown)


# --- the command it builds --------------------------------------------------------------------


@pytest.fixture
def codex_ctx(task_dirs):
    return TaskContext(
        task_id="t1", prompt="Build the thing.", command=None, workdir=task_dirs["work"], home=task_dirs["home"],
        tmpdir=task_dirs["tmp"], upstream_dir=task_dirs["upstream"],
        base_env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-test", "CLAUDECODE": "1",
                  "CODEX_PROVIDER_BASE_URL": "http://127.0.0.1:9/v1/", "CODEX_MODEL": "gpt-test"},
    )


@pytest.mark.parametrize("magicbox_sandbox, codex_sandbox", [("on", "danger-full-access"), ("off", "workspace-write")])
def test_codex_runs_exec_sandboxed_once_and_the_prompt_on_stdin(stand_in_clis, codex_ctx, settings, magicbox_sandbox, codex_sandbox):
    settings.MAGICBOX_SANDBOX = magicbox_sandbox  # in Magic Box's sandbox, codex's own cannot nest
    invocation = CodexAdapter(worker_config("codex"), [str(stand_in_clis)]).build(codex_ctx)

    assert invocation.argv == [
        str(stand_in_clis / "codex"), "exec", "--json", "--skip-git-repo-check", "--ephemeral",
        "--sandbox", codex_sandbox, "-C", str(codex_ctx.workdir), "-",
    ]
    assert invocation.stdin == b"Build the thing."
    assert invocation.cwd == codex_ctx.workdir
    assert invocation.env["HOME"] == str(codex_ctx.home)
    assert invocation.env["TMPDIR"] == str(codex_ctx.tmpdir)
    assert invocation.env["CODEX_HOME"] == str(codex_ctx.home / ".codex")
    assert "CLAUDECODE" not in invocation.env


def test_codex_home_holds_the_model_and_a_provider_with_retries_off(stand_in_clis, codex_ctx):
    CodexAdapter(worker_config("codex"), [str(stand_in_clis)]).build(codex_ctx)

    config = (codex_ctx.home / ".codex" / "config.toml").read_text()
    assert 'model = "gpt-test"' in config
    assert 'model_provider = "magicbox"' in config
    assert 'base_url = "http://127.0.0.1:9/v1"' in config
    assert 'env_key = "OPENAI_API_KEY"' in config
    assert 'wire_api = "responses"' in config
    assert "request_max_retries = 0" in config and "stream_max_retries = 0" in config


def test_without_a_provider_url_codex_keeps_its_own_provider(stand_in_clis, codex_ctx):
    del codex_ctx.base_env["CODEX_PROVIDER_BASE_URL"]
    del codex_ctx.base_env["CODEX_MODEL"]

    CodexAdapter(worker_config("codex"), [str(stand_in_clis)]).build(codex_ctx)

    assert "model_provider" not in (codex_ctx.home / ".codex" / "config.toml").read_text()


def test_configured_args_keep_the_provider_config(stand_in_clis, codex_ctx):
    config = worker_config("codex")
    config.args = ["exec", "--json", "-C", "{workdir}", "{prompt}"]

    invocation = CodexAdapter(config, [str(stand_in_clis)]).build(codex_ctx)

    assert invocation.argv[1:] == ["exec", "--json", "-C", str(codex_ctx.workdir), "Build the thing."]
    assert invocation.stdin is None
    assert "magicbox" in (codex_ctx.home / ".codex" / "config.toml").read_text()
