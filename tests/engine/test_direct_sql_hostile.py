"""Hostile input through the statements written directly (orchestration.direct_sql): stored
output, results, errors and state reasons read back exactly as written (NUL shown as U+FFFD,
invalid UTF-8 as U+FFFD), and runs end in the right state."""
from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from orchestration import direct_sql
from orchestration.engine.output import append_chunk, storable
from orchestration.engine.scheduler import cancel_run, start_run
from orchestration.models import OutputChunk, Run, StateChange, TaskRun
from orchestration.engine.runtime import Engine
from tests.conftest import make_plan, py, run_tasks, wait_until

HOSTILE = [
    "nul:\x00:mid\x00end",
    "emoji:😀🎉 ñ 中文 𝔘𝔫𝔦",
    "fmt:%s %d %(x)s %% %%s {0} {x} %",
    "sql:'; DROP TABLE orchestration_taskrun; --",
    "quotes:\" ' ` \\ \\\\ \\n \\x00 \\'",
    "ctrl:\x01\x1b[31mred\x1b[0m\x7f\x0b\x0c",
    "seps:\u2028\u2029\u0085 mid\rcr",
    "?:? ?? $1 :1 :name @x",
]
EXPECTED = [line.replace("\x00", "\ufffd") for line in HOSTILE]


def writer(lines: list[str], extra: str = "") -> list[str]:
    """argv writing `lines` (UTF-8, newline-terminated) to stdout."""
    return py(f"""
        import sys, json
        lines = json.loads({json.dumps(json.dumps(lines))})
        sys.stdout.buffer.write(("\\n".join(lines) + "\\n").encode("utf-8"))
        sys.stdout.flush()
        {extra}
    """)


async def output_of(task_run: TaskRun) -> str:
    return await sync_to_async(task_run.output_text)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_hostile_lines_are_stored_and_handed_on_as_written():
    run, t = await run_tasks([
        {"id": "a", "worker": "shell", "command": writer(HOSTILE)},
        {"id": "b", "worker": "shell", "depends_on": ["a"],
         "command": ["python", "-c", "import sys; sys.stdout.write(sys.argv[1])", "{{ tasks.a.result }}"]},
    ])
    assert run.state == "succeeded", (run.state_reason, t["a"].error, t["b"].error)
    out = await output_of(t["a"])
    for line in EXPECTED:
        assert "\n" + line + "\n" in out.replace("\r", "\r"), line
    expected_result = "\n".join(EXPECTED) + "\n"
    assert t["a"].result == expected_result.removesuffix("\n")  # a result is stdout without its last newline
    assert t["b"].result.strip("\n") == expected_result.strip("\n")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_invalid_utf8_is_shown_as_replacement_characters():
    run, t = await run_tasks([{"id": "a", "worker": "shell", "command": py(r"""
        import sys
        sys.stdout.buffer.write(b"bad:\xff\xfe\xc3(\xed\xa0\x80:end\n")
    """)}])
    assert run.state == "succeeded"
    out = await output_of(t["a"])
    line = [x for x in out.splitlines() if x.startswith("bad:")][0]
    assert line.startswith("bad:\ufffd\ufffd\ufffd(") and line.endswith(":end"), repr(line)
    assert "\ufffd" in t["a"].result


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_line_longer_than_a_chunk_and_many_lines_at_once():
    long_line = "L" + "é" * 70_000 + "😀" * 10 + "%s" * 100 + "\x00" + "Z"
    many = [f"line {i}: '%s' \x00 ü" for i in range(5000)]
    run, t = await run_tasks([{"id": "a", "worker": "shell", "command": py("""
        import sys
        long_line = "L" + "é" * 70_000 + "😀" * 10 + "%s" * 100 + "\\x00" + "Z"
        many = [f"line {i}: '%s' \\x00 ü" for i in range(5000)]
        sys.stdout.buffer.write(("\\n".join([long_line, *many]) + "\\n").encode("utf-8"))
    """)}])
    assert run.state == "succeeded", t["a"].error
    out = await output_of(t["a"])
    assert long_line.replace("\x00", "\ufffd") + "\n" in out
    for line in many:
        assert line.replace("\x00", "\ufffd") + "\n" in out
    chunks = await sync_to_async(list)(OutputChunk.objects.filter(task_run=t["a"]).order_by("seq").values_list("seq", "text", "newlines"))
    assert [c[0] for c in chunks] == list(range(1, len(chunks) + 1))
    assert all(len(text) <= 64 * 1024 and text.count("\n") == newlines for _, text, newlines in chunks)
    row = await TaskRun.objects.aget(pk=t["a"].pk)
    assert row.output_seq == len(chunks)
    assert row.output_bytes == sum(len(text.encode("utf-8")) for _, text, _ in chunks)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_hostile_error_is_kept_in_the_error_and_state_reason_through_a_retry(tmp_path):
    marker = tmp_path / "once"
    error_text = "err:'; DROP TABLE x; -- %s %(x)s \\ \x00 😀"
    run, t = await run_tasks([{"id": "a", "worker": "shell", "retries": 1, "command": py(f"""
        import os, sys
        marker = {str(marker)!r}
        if not os.path.exists(marker):
            open(marker, "w").close()
            sys.stdout.write({("first:" + HOSTILE[2] + HOSTILE[3])!r} + "\\n")
            sys.stderr.write({error_text!r} + "\\n")
            sys.exit(3)
        sys.stdout.write({("second:" + HOSTILE[0])!r} + "\\n")
    """)}])
    assert run.state == "succeeded", (run.state_reason, t["a"].error, t["a"].state_reason)
    assert t["a"].attempt == 2
    assert t["a"].result == "second:" + EXPECTED[0]
    out = await output_of(t["a"])
    assert "[Magic Box] attempt 1:" in out and "[Magic Box] attempt 2:" in out
    assert "first:" + EXPECTED[2] + EXPECTED[3] + "\n" in out
    assert error_text.replace("\x00", "\ufffd") + "\n" in out
    reasons = await sync_to_async(list)(StateChange.objects.filter(task_run=t["a"]).order_by("id").values_list("to_state", "reason"))
    retry = [r for s, r in reasons if s == "queued" and "retrying" in r]
    assert retry and error_text.replace("\x00", "\ufffd") in retry[0], reasons


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_final_failure_keeps_the_hostile_error():
    error_text = "boom:%s %(x)s '; DROP TABLE x; -- \\\\ \x00 😀"
    run, t = await run_tasks([
        {"id": "a", "worker": "shell", "command": py(f"""
            import sys
            sys.stderr.write({error_text!r} + "\\n")
            sys.exit(2)
        """)},
        {"id": "b", "worker": "shell", "depends_on": ["a"], "command": "true"},
    ])
    assert run.state == "failed"
    assert t["a"].state == "failed" and t["b"].state == "skipped"
    assert error_text.replace("\x00", "\ufffd") in t["a"].error or error_text.replace("\x00", "\ufffd") in await output_of(t["a"]), t["a"].error
    change = await StateChange.objects.filter(task_run=t["a"], to_state="failed").alast()
    assert change.reason == t["a"].state_reason == t["a"].error


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_fan_out_of_50_hostile_tasks_and_their_fan_in(settings):
    settings.MAGICBOX_MAX_PARALLEL = 8
    ids = [f"t_{i}.x-{i}" for i in range(50)]
    tasks = [{"id": tid, "worker": "shell", "command": writer([f"{tid}:'%s\x00😀 %(x)s", HOSTILE[3]])} for tid in ids]
    tasks.append({"id": "join", "worker": "shell", "depends_on": ids, "command": py("""
        import os
        d = os.environ["MAGICBOX_UPSTREAM_DIR"]
        for name in sorted(os.listdir(d)):
            print(name, repr(open(os.path.join(d, name), encoding="utf-8").read()))
    """)})
    run, t = await run_tasks(tasks)
    assert run.state == "succeeded", run.state_reason
    for tid in ids:
        expected = f"{tid}:'%s\ufffd😀 %(x)s\n{EXPECTED[3]}\n"
        assert t[tid].result == expected.removesuffix("\n")
        assert expected in await output_of(t[tid])
        assert f"{tid}.result {expected.removesuffix(chr(10))!r}" in t["join"].result, tid


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_cancelling_a_run_with_a_hostile_reason(tmp_path):
    plan = await sync_to_async(make_plan)(json.dumps({"name": "c'%s\"😀", "parallel_execution": {"tasks": [
        {"id": "slow", "worker": "shell", "command": ["sleep", "30"]},
        {"id": "after", "worker": "shell", "command": "true", "depends_on": ["slow"]}]}}))
    run = await sync_to_async(start_run)(plan)
    engine = Engine()
    await engine.wake()
    await asyncio.to_thread(wait_until, TaskRun.objects.filter(run=run, task_id="slow", state="running", output_seq__gt=0).exists,
                            30, "the slow task to run")
    reason = "stop:'; DROP TABLE x; -- %s %(x)s \\ 😀"
    assert await sync_to_async(cancel_run)(run.pk, reason)
    await asyncio.wait_for(engine.settle(), 60)
    run = await Run.objects.aget(pk=run.pk)
    assert run.state == "cancelled" and run.state_reason == reason
    rows = {r.task_id: r async for r in TaskRun.objects.filter(run=run)}
    assert rows["slow"].state == "cancelled" and rows["slow"].state_reason == reason
    assert rows["after"].state == "cancelled"
    assert await StateChange.objects.filter(run=run, reason=reason).acount() >= 3


# --- the statements themselves, with text that no shell task can produce ---------------------


def _one_task_run():
    plan = make_plan(json.dumps({"name": "u", "parallel_execution": {"tasks": [{"id": "a", "worker": "shell", "command": "true"}]}}))
    run = start_run(plan)
    return TaskRun.objects.get(run=run, task_id="a")


@pytest.mark.django_db(transaction=True)
def test_append_chunk_with_hostile_text_reads_back():
    task_run = _one_task_run()
    text = "\n".join(HOSTILE) + "\n"
    stored = append_chunk(task_run.pk, 1, text)
    assert stored is not None and stored[2] == "\n".join(EXPECTED) + "\n"
    assert task_run.output_text() == "\n".join(EXPECTED) + "\n"


@pytest.mark.django_db(transaction=True)
def test_append_chunk_with_a_lone_surrogate_stores_a_replacement_character():
    """An agent's JSON event may carry "\\ud800" (JSON allows the escape): its display line has
    a lone surrogate, which no database can store (the ORM raised too): it is shown as U+FFFD."""
    task_run = _one_task_run()
    append_chunk(task_run.pk, 1, "lone:\ud800:end \udc80\U0001F600\n")
    assert task_run.output_text() == "lone:\ufffd:end \ufffd\U0001F600\n"


@pytest.mark.django_db(transaction=True)
def test_a_transition_with_hostile_reason_and_fields():
    task_run = _one_task_run()
    reason = "\n".join(EXPECTED)
    task_run.claimed_by = "w'%s\"😀"
    assert task_run.transition("running", reason, expect="queued", claimed_by="w'%s\"😀", error="%(x)s'; --")
    fresh = TaskRun.objects.get(pk=task_run.pk)
    assert (fresh.state, fresh.state_reason, fresh.claimed_by, fresh.error) == ("running", reason, "w'%s\"😀", "%(x)s'; --")
    assert StateChange.objects.filter(task_run=task_run, to_state="running").get().reason == reason
    # with an owner that holds it: the match has the hostile name too
    assert task_run.transition("succeeded", "done %s", owner="w'%s\"😀", result="r:%s\x00".replace("\x00", "\ufffd"))
    assert TaskRun.objects.get(pk=task_run.pk).result == "r:%s\ufffd"


@pytest.mark.django_db(transaction=True)
def test_a_transition_with_a_lone_surrogate_reason_stores_a_replacement_character():
    task_run = _one_task_run()
    assert task_run.transition("cancelled", storable("why:\udc80"))
    assert TaskRun.objects.get(pk=task_run.pk).state_reason == "why:\ufffd"


@pytest.mark.django_db(transaction=True)
def test_direct_rows_counts_exists_with_hostile_values():
    task_run = _one_task_run()
    hostile = "x'%s\"; DROP TABLE y; --😀\\"
    TaskRun.objects.filter(pk=task_run.pk).update(worker=hostile, state="running")
    assert direct_sql.counts(TaskRun, "worker", {"state": "running"}) == {hostile: 1}
    assert [r.pk for r in direct_sql.rows(TaskRun, {"worker": hostile}, ("task_id",))] == [task_run.pk]
    assert direct_sql.rows(TaskRun, {"worker": "%"}, ("task_id",)) == []
    assert direct_sql.exists(TaskRun, {"task_id__in": ["a", hostile], "state__not_in": ["%s", hostile]})
    assert not direct_sql.exists(TaskRun, {"task_id__in": ["%"]})
    assert direct_sql.update_where(TaskRun, {"pk": task_run.pk, "worker": hostile}, {"result": "%s%%%(a)s"}, ["running"]) == 1
    assert TaskRun.objects.get(pk=task_run.pk).result == "%s%%%(a)s"
