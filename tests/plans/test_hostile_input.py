"""Hostile or odd plan files get a located message quickly, never a crash, and store nothing."""
from __future__ import annotations

import textwrap

import pytest

from orchestration.plans.errors import PlanInvalid
from orchestration.plans.graph import critical_path
from orchestration.plans.loader import decode_plan, load_plan


def report_of(text: str) -> str:
    with pytest.raises(PlanInvalid) as caught:
        load_plan(textwrap.dedent(text), "bad.yaml")
    return caught.value.report()


def test_an_alias_bomb_is_refused_at_once():
    levels = ["x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    report = report_of("\n".join(levels))
    assert "aliases (*name) expanded" in report and "bad.yaml:" in report


def test_an_alias_that_contains_itself_is_refused():
    assert "never ends" in report_of("parallel_execution: &loop\n  tasks: [*loop]\n")


def test_aliases_within_the_limits_still_work():
    spec = load_plan(textwrap.dedent("""\
        parallel_execution:
          tasks:
            - &shell {id: a, worker: shell, command: "true"}
            - {<<: *shell, id: b, depends_on: [a]}
        """))
    assert [t.id for t in spec.tasks] == ["a", "b"]


def test_deep_nesting_is_refused_with_a_message():
    deep = "[" * 3000 + "]" * 3000
    assert "nested too deeply" in report_of(f"parallel_execution: {deep}\n")


@pytest.mark.parametrize("key", ["5", "~", "yes", "3.5"])
def test_a_key_that_is_not_text_is_named_with_its_line(key):
    report = report_of(f"""\
        parallel_execution:
          tasks:
            - {{id: a, worker: shell, command: "true"}}
          {key}: x
        """)
    assert "bad.yaml:4:3:" in report and "is not text: quote it" in report


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1.0e+400"])
def test_a_number_that_is_not_finite_is_refused(value):
    report = report_of(f"""\
        parallel_execution:
          tasks:
            - {{id: a, worker: shell, command: "true", timeout: {value}}}
        """)
    assert "parallel_execution.tasks[0].timeout" in report and "finite" in report


def test_a_nul_character_is_refused_where_it_stands():
    report = report_of('parallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: ["echo", "a\\0b"]}\n')
    assert "parallel_execution.tasks[0].command[1]" in report and "NUL" in report


def test_a_task_id_with_a_trailing_newline_is_not_a_task_id():
    assert "is not a valid task id" in report_of('parallel_execution:\n  tasks:\n    - {id: "a\\n", worker: shell, command: "true"}\n')


@pytest.mark.parametrize("name", ['"   "', "x" * 201])
def test_a_blank_or_overlong_name_is_refused(name):
    report = report_of(f'name: {name}\nparallel_execution:\n  tasks:\n    - {{id: a, worker: shell, command: "true"}}\n')
    assert "bad.yaml:1:7: name:" in report


def test_a_command_whose_program_is_empty_is_refused():
    assert "names a program" in report_of('parallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: [""]}\n')


def test_a_file_that_is_not_utf8_is_refused_at_the_bad_byte():
    with pytest.raises(PlanInvalid) as caught:
        decode_plan("name: ok\ndescription: caf\xe9\n".encode("latin-1"), "latin.yaml")
    assert "latin.yaml:2:17: the file is not UTF-8 text (byte 0xe9 here)" in caught.value.report()


def test_a_utf8_byte_order_mark_is_accepted():
    assert decode_plan(b"\xef\xbb\xbfname: ok\n", "bom.yaml") == "name: ok\n"


def test_too_many_tasks_are_refused():
    tasks = "\n".join(f"    - {{id: t{i}, worker: shell, command: 'true'}}" for i in range(2001))
    assert "at most 2000 are allowed" in report_of(f"parallel_execution:\n  tasks:\n{tasks}\n")


def test_a_long_chain_is_analysed_in_linear_time():
    upstream = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(20_000)}
    length, path = critical_path(upstream, dict.fromkeys(upstream, 1.0))
    assert length == 20_000 and path[0] == "t0" and path[-1] == "t19999"
