"""The claude worker: its command and how its stream-json events (claude 2.1.197) read for people.

The recordings are real claude output against the fake model server (see tests/workers/recordings).
"""
from __future__ import annotations

import json

import pytest

from orchestration.workers.base import TaskContext
from orchestration.workers.claude import DEFAULT_ARGS, ClaudeAdapter, ClaudeEventParser
from orchestration.workers.events import SHOWN_LINE_LIMIT
from orchestration.workers.registry import worker_config


def replay(lines: list[str], exit_code: int, stderr: str = "") -> tuple[list[str], object]:
    parser = ClaudeEventParser()
    shown = [shown for line in lines for shown in parser.feed_stdout(line)]
    return shown, parser.finish(exit_code, stderr)


# --- reading events ---------------------------------------------------------------------------


def test_a_text_answer_becomes_the_result_with_cost_tokens_and_session(recording):
    lines = recording("claude-text")
    session_id = json.loads(lines[0])["session_id"]

    shown, outcome = replay(lines, 0)

    assert outcome.succeeded
    assert outcome.result == "The capital of France is Paris."
    assert outcome.error == ""
    assert outcome.cost_usd == pytest.approx(0.00675)
    assert (outcome.input_tokens, outcome.output_tokens) == (1200, 30)
    assert outcome.session_id == session_id
    assert shown == [
        f"claude started (model claude-opus-4-8[1m], session {session_id})",
        "The capital of France is Paris.",
        "claude finished (1 turn, $0.0067, 1,200 in / 30 out tokens)",
    ]


def test_the_version_and_the_model_that_answered_come_from_the_events(recording):
    _, outcome = replay(recording("claude-text"), 0)

    assert (outcome.cli_version, outcome.model) == ("2.1.197", "claude-opus-4-8")  # not the init's "[1m]" alias


def test_an_api_error_keeps_the_configured_model_not_claudes_synthetic_one(recording):
    _, outcome = replay(recording("claude-api-error-500"), 1)

    assert (outcome.cli_version, outcome.model) == ("2.1.197", "claude-opus-4-8[1m]")


def test_a_file_write_shows_the_written_path_and_the_tool_result(recording):
    shown, outcome = replay(recording("claude-write-file"), 0)

    assert outcome.succeeded
    assert outcome.result == "I wrote src/greet.py."
    assert outcome.cost_usd == pytest.approx(0.0135)
    assert (outcome.input_tokens, outcome.output_tokens) == (2400, 60)
    assert shown[1] == "→ Write src/greet.py"
    assert shown[2].startswith("  ← File created successfully at: ")
    assert shown[3:] == ["I wrote src/greet.py.", "claude finished (2 turns, $0.0135, 2,400 in / 60 out tokens)"]


def test_an_api_error_fails_the_task_even_though_claude_says_subtype_success(recording):
    lines = recording("claude-api-error-500")
    result_event = json.loads(lines[-1])
    assert (result_event["subtype"], result_event["is_error"]) == ("success", True)

    shown, outcome = replay(lines, 1)

    assert not outcome.succeeded
    assert outcome.error.startswith("claude API error 500: The model is on fire.")
    assert outcome.session_id == result_event["session_id"]
    assert shown[-1].startswith("claude API error 500: The model is on fire.")


def test_a_400_names_its_status_and_message(recording):
    _, outcome = replay(recording("claude-api-error-400"), 1)

    assert not outcome.succeeded
    assert outcome.error == "claude API error 400: The model is on fire."


def test_the_result_event_decides_over_the_exit_code(recording):
    _, good_but_nonzero = replay(recording("claude-text"), 1)
    _, error_but_zero = replay(recording("claude-api-error-400"), 0)

    assert good_but_nonzero.succeeded
    assert not error_but_zero.succeeded


def test_without_a_result_event_the_task_fails_and_says_what_claude_wrote_on_stderr(recording):
    init_only = recording("claude-text")[:1]

    stderr = "loading config\nError: Claude Code cannot be launched inside another Claude Code session."
    _, outcome = replay(init_only, 1, stderr)

    assert not outcome.succeeded
    assert "claude exited with code 1 without reporting a result event" in outcome.error
    assert "cannot be launched inside another Claude Code session" in outcome.error
    assert outcome.session_id


def test_a_run_that_printed_nothing_says_so():
    _, outcome = replay([], 127, "")

    assert not outcome.succeeded
    assert "printed no events at all" in outcome.error
    assert "wrote nothing to stderr" in outcome.error


def test_a_megabyte_long_line_is_read_whole_and_shown_cut_to_one_log_line(recording):
    lines = recording("claude-text")
    big = "word " * 250_000  # 1.25 MB on one JSON line
    assistant = json.loads(lines[1])
    assistant["message"]["content"] = [{"type": "text", "text": big}]
    tool_result = {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "x" * 1_000_000}]}}
    result = json.loads(lines[-1])
    result["result"] = big
    stream = [lines[0], json.dumps(tool_result), json.dumps(assistant), json.dumps(result)]
    assert max(len(line) for line in stream) > 1_000_000

    shown, outcome = replay(stream, 0)

    assert outcome.succeeded
    assert outcome.result == big
    assert all(len(line) <= SHOWN_LINE_LIMIT for line in shown)
    assert shown[1].startswith("  ← xxx") and len(shown[1]) < 250


def test_noise_lines_between_events_are_shown_and_do_not_disturb_the_outcome(recording):
    lines = recording("claude-write-file")
    noisy = [lines[0], "", "Warning: something odd", "{not json", "[1, 2, 3]", *lines[1:], "\r"]

    shown, outcome = replay(noisy, 0)

    assert outcome.succeeded and outcome.result == "I wrote src/greet.py."
    assert "Warning: something odd" in shown
    assert "{not json" in shown
    assert "" not in shown


def test_retries_of_the_api_are_shown():
    parser = ClaudeEventParser()
    event = {"type": "system", "subtype": "api_retry", "attempt": 2, "max_retries": 10, "retry_delay_ms": 4000,
             "error_status": 529, "error": "overloaded_error", "session_id": "s1"}

    assert parser.feed_stdout(json.dumps(event)) == ["API error 529: overloaded_error; retrying (2/10) in 4 s"]


def test_a_tool_error_is_shown_as_an_error():
    parser = ClaudeEventParser()
    event = {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "is_error": True, "content": "Permission denied"}]}}

    assert parser.feed_stdout(json.dumps(event)) == ["  ← error: Permission denied"]


def test_reaching_the_turn_limit_fails_with_a_plain_message():
    parser = ClaudeEventParser()
    parser.feed_stdout(json.dumps({"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 3,
                                   "session_id": "s1", "total_cost_usd": 0.5, "usage": {}}))

    outcome = parser.finish(1, "")

    assert not outcome.succeeded
    assert outcome.error == "claude stopped after reaching its maximum number of turns"
    assert outcome.cost_usd == 0.5


# --- the command it builds --------------------------------------------------------------------


@pytest.fixture
def claude_ctx(task_dirs):
    return TaskContext(
        task_id="t1", prompt="Build the thing.", command=None, workdir=task_dirs["work"], home=task_dirs["home"],
        tmpdir=task_dirs["tmp"], upstream_dir=task_dirs["upstream"],
        base_env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "ANTHROPIC_API_KEY": "k", "CLAUDECODE": "1",
                  "CLAUDE_CODE_ENTRYPOINT": "cli"},
    )


def test_claude_gets_the_prompt_on_stdin_and_a_private_home(stand_in_clis, claude_ctx):
    adapter = ClaudeAdapter(worker_config("claude"), [str(stand_in_clis)])

    invocation = adapter.build(claude_ctx)

    assert invocation.argv == [str(stand_in_clis / "claude"), *DEFAULT_ARGS]
    assert "--permission-mode" in invocation.argv and "acceptEdits" in invocation.argv
    assert invocation.stdin == b"Build the thing."
    assert invocation.cwd == claude_ctx.workdir
    assert invocation.env["HOME"] == str(claude_ctx.home)
    assert invocation.env["TMPDIR"] == str(claude_ctx.tmpdir)
    assert invocation.env["ANTHROPIC_API_KEY"] == "k"
    assert invocation.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert "CLAUDECODE" not in invocation.env and "CLAUDE_CODE_ENTRYPOINT" not in invocation.env


def test_configured_args_and_env_override_the_defaults_but_never_bring_back_claudecode(stand_in_clis, claude_ctx):
    config = worker_config("claude")
    config.args = ["-p", "{prompt}", "--add-dir", "{workdir}"]
    config.env = {"ANTHROPIC_MODEL": "claude-test", "CLAUDECODE": "1"}
    adapter = ClaudeAdapter(config, [str(stand_in_clis)])

    invocation = adapter.build(claude_ctx)

    assert invocation.argv[1:] == ["-p", "Build the thing.", "--add-dir", str(claude_ctx.workdir)]
    assert invocation.stdin is None
    assert invocation.env["ANTHROPIC_MODEL"] == "claude-test"
    assert "CLAUDECODE" not in invocation.env


def test_a_prompt_too_long_for_argv_is_refused_when_args_put_it_there(stand_in_clis, claude_ctx):
    config = worker_config("claude")
    config.args = ["-p", "{prompt}"]
    claude_ctx.prompt = "x" * 200_000

    with pytest.raises(ValueError, match="too long for a command-line argument"):
        ClaudeAdapter(config, [str(stand_in_clis)]).build(claude_ctx)


def test_partial_message_events_grow_the_text_being_written_and_the_whole_message_replaces_it():
    def delta(text: str) -> str:
        return json.dumps({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
                                                             "delta": {"type": "text_delta", "text": text}}})

    parser = ClaudeEventParser()
    start = json.dumps({"type": "stream_event", "event": {"type": "message_start", "message": {}}})
    assert parser.feed_stdout(start) == [] and parser.feed_stdout(delta("Paris is ")) == []
    assert parser.partial_text(1000) == "Paris is "
    assert parser.feed_stdout(delta("the capital.")) == []
    assert parser.partial_text(1000) == "Paris is the capital." and parser.partial_text(8) == "capital."
    whole = {"type": "assistant", "message": {"content": [{"type": "text", "text": "Paris is the capital."}]}}
    assert parser.feed_stdout(json.dumps(whole)) == ["Paris is the capital."]  # shown once, as a line
    assert parser.partial_text(1000) == ""
