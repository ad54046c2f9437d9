"""The real claude, codex and gemini CLIs, run the engine's way, against the fake model server.

Each test builds the command with the worker's adapter (configured from settings.MAGICBOX_WORKERS),
runs it with `run_process` exactly as the engine does (in the task sandbox), feeds every line to the adapter's parser
and checks the Outcome a user would see.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from django.utils.module_loading import import_string

from orchestration.workers.base import Outcome, TaskContext, WorkerAdapter, WorkerUnavailable
from orchestration.workers import sandbox
from orchestration.workers.process import run_process
from orchestration.workers.registry import worker_config
from tests.fakes.model_server import Fail, ModelServer, Text, WriteFile

pytestmark = pytest.mark.cli

CLIS = ["claude", "codex", "gemini"]
RUN_TIMEOUT = 120  # seconds; a healthy run takes a few seconds


def adapter_for(name: str, search_path: list[str]) -> WorkerAdapter:
    """The adapter of worker `name` as the registry builds it, searching only `search_path`."""
    config = worker_config(name)
    return import_string(config.adapter)(config, search_path)


def task_context(root: Path, name: str, server: ModelServer, prompt: str, bin_dir: Path) -> TaskContext:
    """A TaskContext like the engine's: fresh workdir, private home and tmpdir, explicit base env."""
    dirs = {d: root / d for d in ("work", "home", "tmp", "upstream")}
    for d in dirs.values():
        d.mkdir(parents=True)
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "/usr/bin:/bin")])
    base_env = {"PATH": path, "LANG": "C.UTF-8", **server.client_env(name)}
    return TaskContext(
        task_id=f"{name}-task", prompt=prompt, command=None, workdir=dirs["work"], home=dirs["home"],
        tmpdir=dirs["tmp"], upstream_dir=dirs["upstream"], base_env=base_env,
    )


@dataclass
class Run:
    """What a user sees of one attempt: the Outcome, the live log lines, the raw stdout, the time taken."""

    outcome: Outcome
    shown: list[str]
    stdout: list[str]
    exit_code: int | None
    seconds: float


async def run_worker(adapter: WorkerAdapter, ctx: TaskContext, timeout: float = RUN_TIMEOUT) -> Run:
    """Build, run and parse one attempt, the engine's way."""
    invocation = adapter.build(ctx)
    parser = adapter.parser()
    shown: list[str] = []
    stdout: list[str] = []

    def on_stdout(line: str) -> None:
        stdout.append(line)
        shown.extend(parser.feed_stdout(line))

    started = time.monotonic()
    confinement = sandbox.for_attempt(ctx.workdir, ctx.home, ctx.tmpdir, (ctx.upstream_dir,))  # as the engine confines a task
    result = await run_process(invocation, on_stdout, lambda line: shown.extend(parser.feed_stderr(line)), timeout,
                               confinement=confinement)
    seconds = time.monotonic() - started
    shown.extend(parser.end_of_output())
    assert not result.timed_out, f"the CLI did not finish within {timeout} s; it showed: {shown}"
    outcome = parser.finish(result.exit_code, result.stderr_tail)
    return Run(outcome, shown, stdout, result.exit_code, seconds)


def run_cli(name: str, tmp_path: Path, server: ModelServer, prompt: str, bin_dir: Path) -> Run:
    adapter = adapter_for(name, [str(bin_dir)])
    return asyncio.run(run_worker(adapter, task_context(tmp_path, name, server, prompt, bin_dir)))


@pytest.mark.parametrize("cli", CLIS)
def test_an_agent_answers_with_the_text_the_model_gave(cli, tmp_path, model_server, agent_clis):
    model_server.reply(Text("The capital of France is Paris."))

    run = run_cli(cli, tmp_path, model_server, "What is the capital of France? (task 7f3a)", agent_clis)

    assert run.outcome.succeeded, run.outcome.error
    assert run.outcome.result == "The capital of France is Paris."
    assert run.outcome.error == ""
    assert any("(task 7f3a)" in prompt for prompt in model_server.prompts())
    assert run.outcome.session_id
    assert run.outcome.input_tokens and run.outcome.output_tokens
    assert "The capital of France is Paris." in run.shown
    if cli == "claude":
        assert run.outcome.cost_usd and run.outcome.cost_usd > 0
    else:
        assert run.outcome.cost_usd is None  # codex and gemini report no cost


@pytest.mark.parametrize("cli", CLIS)
def test_an_agent_writes_the_file_the_model_asked_for_into_its_workdir(cli, tmp_path, model_server, agent_clis):
    content = "def greet(name):\n    return f'Hello, {name}!'\n"
    model_server.reply(WriteFile("src/greet.py", content, then="I wrote src/greet.py."))

    run = run_cli(cli, tmp_path, model_server, "Write a greeting function in src/greet.py.", agent_clis)

    assert run.outcome.succeeded, run.outcome.error
    written = tmp_path / "work" / "src" / "greet.py"
    assert written.read_text() == content
    assert run.outcome.result == "I wrote src/greet.py."
    assert any(line.startswith("→ ") and "greet.py" in line for line in run.shown), run.shown


@pytest.mark.parametrize(
    ("cli", "status", "expected"),
    [
        ("claude", 500, ["500", "The model is on fire."]),
        ("claude", 400, ["400", "The model is on fire."]),
        ("codex", 400, ["The model is on fire."]),
        ("codex", 503, ["503", "The model is on fire."]),
        ("gemini", 500, ["500", "The model is on fire."]),
        ("gemini", 400, ["400", "The model is on fire."]),
    ],
)
def test_an_api_error_fails_the_task_quickly_with_the_server_message(
    cli, status, expected, tmp_path, model_server, agent_clis
):
    model_server.reply(Fail(status, "The model is on fire."))

    run = run_cli(cli, tmp_path, model_server, "Do something useful.", agent_clis)

    assert not run.outcome.succeeded
    for part in expected:
        assert part in run.outcome.error, run.outcome.error
    assert run.seconds < 20, f"the failure took {run.seconds:.1f} s: the CLI retried"
    assert any("The model is on fire." in line for line in run.shown), run.shown


def test_codex_reports_a_500_only_as_high_demand(tmp_path, model_server, agent_clis):
    """codex 0.171 replaces a 500's body with a fixed "high demand" message; the task still fails fast."""
    model_server.reply(Fail(500, "The model is on fire."))

    run = run_cli("codex", tmp_path, model_server, "Do something useful.", agent_clis)

    assert not run.outcome.succeeded
    assert "500" in run.outcome.error and "high demand" in run.outcome.error
    assert run.seconds < 20


@pytest.mark.parametrize("cli", CLIS)
def test_a_prompt_of_200_kilobytes_reaches_the_model_whole(cli, tmp_path, model_server, agent_clis):
    prompt = "Summarise this log.\n" + "\n".join(f"line {i}: " + "x" * 90 for i in range(2000)) + "\nEND-OF-LOG"
    assert len(prompt.encode()) > 200_000
    model_server.reply(Text("It is a long log."))

    run = run_cli(cli, tmp_path, model_server, prompt, agent_clis)

    assert run.outcome.succeeded, run.outcome.error
    assert any("line 1999: " in p and "END-OF-LOG" in p and "Summarise this log." in p for p in model_server.prompts())


def test_several_agents_sharing_one_model_server_each_get_their_own_answer(tmp_path, model_server, agent_clis):
    model_server.when("task alpha", Text("alpha done"))
    model_server.when("task beta", WriteFile("beta.txt", "from beta\n", then="beta done"))
    model_server.when("task gamma", Text("gamma done"))
    model_server.reply(Fail(400, "no rule matched this prompt"))

    async def all_three() -> list[Run]:
        jobs = []
        for cli, task in zip(CLIS, ("alpha", "beta", "gamma"), strict=True):
            ctx = task_context(tmp_path / cli, cli, model_server, f"This is task {task}.", agent_clis)
            jobs.append(run_worker(adapter_for(cli, [str(agent_clis)]), ctx))
        return await asyncio.gather(*jobs)

    claude, codex, gemini = asyncio.run(all_three())

    results = (claude.outcome.result, codex.outcome.result, gemini.outcome.result)
    assert results == ("alpha done", "beta done", "gamma done")
    assert (tmp_path / "codex" / "work" / "beta.txt").read_text() == "from beta\n"


@pytest.mark.parametrize("cli", CLIS)
def test_a_worker_whose_cli_is_not_installed_says_which_program_and_how_to_install_it(cli, tmp_path, model_server):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    adapter = adapter_for(cli, [str(empty)])
    ctx = task_context(tmp_path / "task", cli, model_server, "Anything.", empty)

    assert "not installed" in adapter.unavailable_reason(dict(ctx.base_env))
    with pytest.raises(WorkerUnavailable) as raised:
        adapter.build(ctx)

    message = str(raised.value)
    assert f"'{cli}'" in message
    assert adapter.config.install_hint and adapter.config.install_hint in message
    assert str(empty) in message


def test_configured_args_can_put_the_prompt_in_argv(tmp_path, model_server, agent_clis):
    model_server.reply(Text("argv works"))
    adapter = adapter_for("claude", [str(agent_clis)])
    adapter.config = replace(
        adapter.config,
        args=["-p", "{prompt}", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"],
    )
    ctx = task_context(tmp_path, "claude", model_server, "Prompt given as an argument (task 91c).", agent_clis)

    assert adapter.build(ctx).stdin is None
    run = asyncio.run(run_worker(adapter, ctx))

    assert run.outcome.succeeded, run.outcome.error
    assert run.outcome.result == "argv works"
    assert any("(task 91c)" in p for p in model_server.prompts())


def test_codex_uses_the_configured_model_and_writes_through_its_shell_when_it_has_no_patch_tool(
    tmp_path, model_server, agent_clis
):
    model_server.reply(WriteFile("notes/todo.txt", "buy milk\n", then="Noted."))
    ctx = task_context(tmp_path, "codex", model_server, "Write my todo list.", agent_clis)
    ctx.base_env["CODEX_MODEL"] = "local-model"

    run = asyncio.run(run_worker(adapter_for("codex", [str(agent_clis)]), ctx))

    assert run.outcome.succeeded, run.outcome.error
    assert (ctx.workdir / "notes" / "todo.txt").read_text() == "buy milk\n"
    assert {r.body["model"] for r in model_server.requests if r.provider == "openai"} == {"local-model"}
    assert any(line.startswith("→ $ ") and "notes/todo.txt" in line for line in run.shown), run.shown


def large_answer(size: int = 3_000_000) -> str:
    """An answer of more than `size` characters that does not repeat itself (gemini stops an
    answer it sees looping, such as "x" * size, as "Loop detected")."""
    lines, total, i = [], 0, 0
    while total <= size:
        line = f"{i}: " + hashlib.sha256(str(i).encode()).hexdigest()
        lines.append(line)
        total += len(line) + 1
        i += 1
    return "\n".join(lines)


@pytest.mark.parametrize("cli", CLIS)
def test_a_3_megabyte_answer_arrives_whole_every_time(cli, tmp_path, model_server, agent_clis):
    """claude and gemini cut an event written to a pipe at 64 KiB when they exit: stdout is a file."""
    answer = large_answer()
    model_server.reply(Text(answer))

    for attempt in range(3):
        run = run_cli(cli, tmp_path / f"attempt-{attempt}", model_server, "Print the big table.", agent_clis)

        assert run.outcome.succeeded, f"attempt {attempt + 1}: {run.outcome.error}"
        assert len(run.outcome.result) == len(answer), f"attempt {attempt + 1}"
        assert run.outcome.result == answer


@pytest.mark.parametrize("status", [500, 429])
@pytest.mark.parametrize("cli", CLIS)
def test_an_api_error_fails_within_seconds_even_when_the_server_invites_retries(
    cli, status, tmp_path, model_server, agent_clis
):
    """Retrying is Magic Box's job (the plan's `retries`), visible on the run page; each CLI's own is off."""
    model_server.reply(Fail(status, "The model is overloaded, try later.", invite_retry=True))

    run = run_cli(cli, tmp_path, model_server, "Do something useful.", agent_clis)

    assert not run.outcome.succeeded
    assert str(status) in run.outcome.error, run.outcome.error
    if cli != "codex":  # codex 0.171 passes on no provider message for a 500 or a 429
        assert "The model is overloaded, try later." in run.outcome.error, run.outcome.error
    assert len([r for r in model_server.requests if isinstance(r.reply, Fail)]) == 1, "the CLI retried"
    # An upper bound only (the machine may be busy); bench/agent_failures.py measures the real time.
    assert run.seconds < 60, f"the failure took {run.seconds:.1f} s: the CLI retried"
