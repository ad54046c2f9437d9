"""A planner's "decomposition form", rewritten into the canonical `parallel_execution: {tasks: [...]}` form.

A planner may answer with an analysis, numbered subtasks and an execution plan::

    task_analysis:
      goal: "Add user profile page"
      constraints: ["Keep the public API stable"]
    subtasks:
      - id: 1
        name: "Design profile API"           # the task id is made from it: design-profile-api
        worker: claude
        type: design                          # free text, shown in the description
        description: "..."
        dependencies: []                      # ids of other subtasks
        estimated_complexity: medium          # free text, shown in the description
        context_needed: ["existing user model"]
        output_expected: "OpenAPI snippet"
    execution_plan:
      parallel_groups:                        # advice only: checked against the dependencies
        - {group: 1, tasks: [1]}
      quality_gates:                          # a gate on the task named by after_task
        - {after_task: 1, check: "pytest -q"}
    notes: "..."

Each subtask becomes a task: its description (with its type and complexity) is the task's
`description`; its context, expected output, and the plan's goal, constraints and notes make
the task's `prompt`. Any other key of a subtask (command, timeout, retries, writes, gate, loop,
candidates, choose, ...) is passed on as a canonical task key, so the canonical checks judge it;
in `loop.fixes` and `choose.review` a subtask id (a number) is replaced by its task id.

Rules:

* Task ids: `phased.slug` of the subtask's name, made unique with -2, -3, …; `task-<id>` when the
  name has no letter or digit. The mapping is `DecompositionPlan.ids` and is also given as a notice.
* Quality gates: a check is a *command* when (a) the whole text is code in backticks
  (`` `pytest -q` ``, trusted as written), or (b) exactly one backtick span in prose is a
  command line by rule (c) ("Tests pass: `pytest -q`"), or (c) the bare text is a command
  line: it splits like a shell would, its first word is a well-known tool (KNOWN_TOOLS), a path
  to a script (./check.sh, scripts/lint), or a lower-case program found on PATH followed by
  nothing or by an option or path (many programs on PATH are English words: test, time), and no
  other word reads as prose (a word of PROSE_WORDS, or a word ending in . , : ; ! ?). A command
  becomes `gate: {command, message}`; anything else `gate: {approve: true, message}` (a person
  confirms the text). A line with shell syntax (&&, |, ;, >, $(…)) cannot run, since Magic Box
  never uses a shell: it becomes an approval, with a warning.
* Several quality gates after one task: a task has one gate, so they become one approval whose
  message lists every check (commands included, which the person runs or checks); a warning
  says so. Nothing is dropped, and nothing prose-like is run. A subtask with its own `gate:`
  and a quality gate is an error (keep one).
* parallel_groups never change what runs (Magic Box runs by the dependencies), so everything
  wrong in them is a warning, never an error: a group holding tasks that wait for each other,
  groups ordering tasks the dependencies leave unordered (or order the other way), a subtask
  id no subtask has, a subtask in two groups, a malformed group.
* Every other fault of the form (missing `subtasks`, a subtask without a whole-number id, name
  or worker, an unknown or self dependency, a duplicate id, wrong types, unknown keys) is an
  error, located in the original text. Cycles are left to the canonical checks, whose message
  `original_path` points at the subtask's `dependencies`.
"""
from __future__ import annotations

import re
import shutil
from typing import Any

from orchestration.plans import references
from orchestration.plans.names import short_name
from orchestration.plans.errors import PlanProblem
from orchestration.plans.phased import slug

FORM_KEYS = ("task_analysis", "subtasks", "execution_plan", "notes")
ANALYSIS_KEYS = ("goal", "constraints")
EXECUTION_KEYS = ("parallel_groups", "quality_gates")
GATE_KEYS = ("after_task", "check")
SUBTASK_KEYS = ("id", "name", "worker", "type", "description", "dependencies", "estimated_complexity",
                "context_needed", "output_expected", "prompt")

KNOWN_TOOLS = frozenset({
    "pytest", "python", "python3", "tox", "nox", "ruff", "mypy", "pyright", "flake8", "pyflakes", "black", "isort",
    "pylint", "coverage", "uv", "poetry", "pip", "npm", "npx", "pnpm", "yarn", "node", "deno", "bun", "jest",
    "vitest", "eslint", "prettier", "tsc", "playwright", "make", "cmake", "ctest", "ninja", "bazel", "go",
    "gofmt", "golangci-lint", "cargo", "rustc", "mvn", "gradle", "dotnet", "bundle", "rake", "rspec", "rubocop",
    "php", "composer", "phpunit", "mix", "swift", "git", "docker", "kubectl", "terraform", "shellcheck",
})
PROSE_WORDS = frozenset({
    "a", "an", "the", "is", "are", "be", "been", "was", "were", "should", "must", "can", "could", "would", "will",
    "sure", "that", "this", "these", "those", "it", "its", "and", "or", "but", "with", "without", "when", "if",
    "every", "each", "no", "not", "any", "still", "pass", "passes", "works", "work", "matches", "confirm",
    "confirms", "verify", "verifies", "ensure", "ensures", "person", "someone", "manually", "looks", "correct",
    "correctly", "has", "have", "does", "do", "green", "succeed", "succeeds", "to", "of", "for", "in", "on", "from",
    "by", "as", "at", "into", "than", "then", "after", "before",
})
SHELL_SYNTAX = re.compile(r"&&|\|\||[|;<>`]|\$\(")
WHOLE_CODE = re.compile(r"```(?:[\w+-]*\n)?(.*?)\n?```|`([^`]+)`", re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
PROSE_END = re.compile(r"[A-Za-z)]+[.,:;!?]")


LABELS_SHOWN = 5  # subtasks a warning names before "and N more"
WARNINGS_KEPT = 50  # warnings of one answer kept (the rest are counted in one more)


def is_decomposition(data: Any) -> bool:
    """True if `data` is a plan document in the decomposition form: a mapping with a list of
    `subtasks` and no `parallel_execution`."""
    return isinstance(data, dict) and isinstance(data.get("subtasks"), list) and "parallel_execution" not in data


def classify_check(check: str) -> tuple[str | None, str]:
    """Read a quality gate's check (see the module's rules).

    Returns (command line, "") when the check is a command; (None, reason) when it looks like
    commands one gate cannot run (shell syntax, several commands); (None, "") for prose.
    """
    text = check.strip()
    whole = WHOLE_CODE.fullmatch(text)
    if whole:
        code = (whole.group(1) if whole.group(1) is not None else whole.group(2)).strip()
        if SHELL_SYNTAX.search(code) or "\n" in code:
            return None, _SHELL_REASON
        return (code, "") if _split(code) else (None, "")
    spans = CODE_SPAN.findall(text)
    commands = [span.strip() for span in spans if _command_line(span)]
    if len(commands) > 1:
        return None, "it names several commands, and a gate runs one"
    if commands:
        return commands[0], ""
    if _command_line(text):
        return text, ""
    if any(SHELL_SYNTAX.search(line) and _command_line(SHELL_SYNTAX.split(line)[0]) for line in [*spans, text]):
        return None, _SHELL_REASON
    return None, ""


_SHELL_REASON = ("it is a shell command line (&&, |, ;, >, $(…) or several lines), and Magic Box runs gate commands "
                 "without a shell; put the lines in a script and name the script, or write one command per check")


def _split(line: str) -> list[str]:
    try:
        return references.split_command(line)
    except ValueError:
        return []


def _command_line(text: str) -> bool:
    """True for a bare command line: a known tool, a script or a program on PATH, and no prose."""
    text = text.strip()
    words = _split(text) if text and "\n" not in text and not SHELL_SYNTAX.search(text) else []
    if not words:
        return False
    program, arguments = words[0], words[1:]
    if any(word.lower() in PROSE_WORDS or PROSE_END.fullmatch(word) for word in arguments):
        return False
    if program in KNOWN_TOOLS or "/" in program:  # a tool, or a script: ./check.sh, scripts/lint
        return True
    # Some programs on PATH are English words too (test, time, users): those need no arguments
    # or an option or path among them ("test -f dist/app.js", not "test coverage above 80%").
    on_path = program == program.lower() and shutil.which(program) is not None
    return on_path and (not arguments or any(word.startswith("-") or _path_like(word) for word in arguments))


def _path_like(word: str) -> bool:
    """A path or file name: dist/app.js, ./out, setup.cfg."""
    return "/" in word or bool(re.fullmatch(r"[\w.-]+\.\w+", word))


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _digits(value: Any) -> bool:
    """True for text that is a whole number written in quotes ("3")."""
    return isinstance(value, str) and value.strip().isascii() and value.strip().isdigit()


def _ordinal(index: int) -> str:
    n = index + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class DecompositionPlan:
    """The canonical document of a decomposition-form plan and the way back to the original's paths.

    data: the canonical document {"name", "description", "parallel_execution": {"tasks": [...]}}
    (plus any other top-level key of the original, e.g. workspace, for the canonical checks).
    problems: faults of the form itself, [(original path, message)], which stop the plan.
    warnings: [(original path, message)] that do not: the ids made, disagreeing parallel_groups,
    merged gates. ids: {subtask id: task id}. Never raises; `data` is a dict whatever the input.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.source = data if isinstance(data, dict) else {}
        self.problems: list[tuple[list, str]] = []
        self.warnings: list[tuple[list, str]] = []
        self.ids: dict[int, str] = {}
        self._made: dict[int, str] = {}  # index in subtasks -> its task id
        self._first: dict[int, int] = {}  # subtask id -> index in subtasks of the subtask that has it
        self._task_origin: list[int] = []  # canonical task index -> index in subtasks
        self._dep_origin: list[list[int]] = []  # per task: depends_on index -> dependencies index
        self._gate_origin: dict[int, int] = {}  # canonical task index -> its (first) quality gate's index
        self.data = self._convert(self.source)

    # -- conversion -------------------------------------------------------------------------

    def _convert(self, data: dict[str, Any]) -> dict[str, Any]:
        goal, shared = self._analysis(data)
        entries = self._subtasks(data)
        tasks = self._tasks(entries, shared)
        execution = data.get("execution_plan")
        if execution is not None and not isinstance(execution, dict):
            self.problems.append((["execution_plan"], "execution_plan is a mapping with `parallel_groups:` and `quality_gates:`."))
            execution = {}
        execution = execution or {}
        for key in execution:
            if key not in EXECUTION_KEYS:
                self.problems.append((["execution_plan", key], f"unknown key '{key}' in execution_plan: it holds "
                                      "`parallel_groups:` and `quality_gates:`."))
        self._gates(execution.get("quality_gates"), tasks)
        self._groups(execution.get("parallel_groups"))
        if self.ids:
            listing = ", ".join(f"{number} → {task_id}" for number, task_id in self.ids.items())
            self.warnings.insert(0, (["subtasks"], f"task ids made from the subtasks' names: {listing}. Runs, "
                                     "depends_on and messages name the tasks by these ids."))
        document = {k: v for k, v in data.items() if k not in FORM_KEYS}
        if "name" not in data and goal:
            document["name"] = short_name(goal)
        if "description" not in data and goal:
            document["description"] = goal
        document["parallel_execution"] = {"tasks": tasks}
        return document

    def _texts(self, value: Any, path: list, what: str) -> list[str]:
        """One string or a list of strings (None: none); a problem otherwise."""
        if value is None:
            return []
        if isinstance(value, str):
            return [value.strip()] if value.strip() else []
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value if v.strip()]
        self.problems.append((path, f"{what} is text, or a list of texts (`- ...` items)."))
        return []

    def _analysis(self, data: dict[str, Any]) -> tuple[str, str]:
        """The goal, and the text every task's prompt ends with (goal, constraints, notes)."""
        analysis = data.get("task_analysis")
        if analysis is not None and not isinstance(analysis, dict):
            self.problems.append((["task_analysis"], "task_analysis is a mapping with `goal:` and `constraints:`."))
            analysis = {}
        analysis = analysis or {}
        for key in analysis:
            if key not in ANALYSIS_KEYS:
                self.problems.append((["task_analysis", key], f"unknown key '{key}' in task_analysis: it holds `goal:` "
                                      "(one sentence) and `constraints:` (a list)."))
        goal = analysis.get("goal")
        if goal is not None and not isinstance(goal, str):
            self.problems.append((["task_analysis", "goal"], "the goal is text: one sentence saying what the plan achieves."))
            goal = None
        goal = (goal or "").strip()
        constraints = self._texts(analysis.get("constraints"), ["task_analysis", "constraints"], "constraints")
        notes = self._texts(data.get("notes"), ["notes"], "notes")
        parts = [f"Goal: {goal}"] if goal else []
        if constraints:
            parts.append("Constraints:\n" + "\n".join(f"- {c}" for c in constraints))
        if notes:
            parts.append("Notes:\n" + "\n".join(notes))
        return goal, "\n\n".join(parts)

    def _subtasks(self, data: dict[str, Any]) -> list[tuple[int, dict]]:
        """The subtasks that are mappings, with their index; records ids (first wins) and faults."""
        subtasks = data.get("subtasks")
        if not isinstance(subtasks, list) or not subtasks:
            self.problems.append((["subtasks"], "the decomposition form needs `subtasks:`, a list of subtasks such as "
                                  "`- {id: 1, name: \"Build the API\", worker: codex, dependencies: []}`."))
            return []
        entries: list[tuple[int, dict]] = []
        first = self._first
        for index, entry in enumerate(subtasks):
            path = ["subtasks", index]
            if not isinstance(entry, dict):
                self.problems.append((path, "a subtask is a mapping such as `{id: 1, name: \"Build the API\", worker: codex}`."))
                continue
            entries.append((index, entry))
            number = entry.get("id")
            if "id" not in entry:
                self.problems.append((path, f"the {_ordinal(index)} subtask has no `id:`: give it a whole number "
                                      "(id: 3) that other subtasks name in their dependencies."))
            elif not _is_id(number):
                hint = f" Write it without quotes: id: {int(number)}." if _digits(number) else ""
                self.problems.append(([*path, "id"], f"a subtask's id is a whole number (1, 2, 3, …), not {number!r}.{hint}"))
            elif number in first:
                self.problems.append(([*path, "id"], f"duplicate subtask id {number}: the {_ordinal(first[number])} subtask "
                                      "already has it. Give each subtask its own id."))
            else:
                first[number] = index
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problems.append(([*path, "name"] if "name" in entry else path,
                                      "a subtask needs a `name:`, a few words saying what it does (its task id is made from it)."))
            if "worker" not in entry and "candidates" not in entry:
                self.problems.append((path, "a subtask needs a `worker:` (claude, codex, gemini, shell, …) to run it."))
            if "depends_on" in entry:
                self.problems.append(([*path, "depends_on"], "unknown key 'depends_on' in a subtask: the decomposition form "
                                      "lists the subtasks it waits for as `dependencies: [1, 2]` (their ids)."))
        used: set[str] = set()
        for index, entry in entries:
            name = entry.get("name")
            number = entry.get("id")
            base = slug(name) if isinstance(name, str) else ""
            base = base or f"task-{number if _is_id(number) else index + 1}"
            candidate, n = base, 2
            while candidate in used:
                candidate, n = f"{base}-{n}", n + 1
            used.add(candidate)
            self._made[index] = candidate
        self.ids = {number: self._made[index] for number, index in first.items()}
        return entries

    def _label(self, number: int) -> str:
        return f"{number} ({self.ids[number]})"

    def _tasks(self, entries: list[tuple[int, dict]], shared: str) -> list[dict[str, Any]]:
        tasks = []
        for index, entry in entries:
            path = ["subtasks", index]
            task: dict[str, Any] = {"id": self._made[index]}
            if "worker" in entry:
                task["worker"] = entry["worker"]
            task["description"] = self._description(entry, path)
            depends_on, origin = self._dependencies(entry, path)
            if "dependencies" in entry:
                task["depends_on"] = depends_on
            if entry.get("worker") != "shell":
                prompt = self._prompt(entry, path, shared)
                if prompt:
                    task["prompt"] = prompt
            for key, value in entry.items():
                if key not in SUBTASK_KEYS and key != "depends_on":
                    task[key] = self._task_refs(key, value, [*path, key])
            tasks.append(task)
            self._task_origin.append(index)
            self._dep_origin.append(origin)
        return tasks

    def _description(self, entry: dict, path: list) -> str:
        text = entry.get("description")
        if text is not None and not isinstance(text, str):
            self.problems.append(([*path, "description"], "a subtask's description is text saying what to do."))
            text = None
        text = (text or "").strip() or (entry["name"].strip() if isinstance(entry.get("name"), str) else "")
        labels = []
        for key, label in (("type", "type"), ("estimated_complexity", "complexity")):
            value = entry.get(key)
            if value is None:
                continue
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
                labels.append(f"{label}: {str(value).strip()}")
            else:
                self.problems.append(([*path, key], f"{key} is a word or two (e.g. `{'design' if key == 'type' else 'medium'}`)."))
        if labels:
            line = " · ".join(labels)
            text = f"{text}\n\n{line[0].upper()}{line[1:]}" if text else line[0].upper() + line[1:]
        return text

    def _prompt(self, entry: dict, path: list, shared: str) -> str:
        parts = []
        own = entry.get("prompt")
        if isinstance(own, str) and own.strip():
            parts.append(own.strip())
        elif own is not None and not isinstance(own, str):
            self.problems.append(([*path, "prompt"], "a subtask's prompt is text: instructions for its worker."))
        context = self._texts(entry.get("context_needed"), [*path, "context_needed"], "context_needed")
        if context:
            parts.append("Context needed:\n" + "\n".join(f"- {c}" for c in context))
        output = self._texts(entry.get("output_expected"), [*path, "output_expected"], "output_expected")
        if output:
            body = output[0] if isinstance(entry.get("output_expected"), str) else "\n".join(f"- {o}" for o in output)
            parts.append(f"Output expected:\n{body}")
        if shared:
            parts.append(shared)
        return "\n\n".join(parts)

    def _dependencies(self, entry: dict, path: list) -> tuple[list[str], list[int]]:
        """(task ids, index in `dependencies` of each); faulty entries are reported and left out."""
        deps = entry.get("dependencies")
        if deps is None:
            return [], []
        if not isinstance(deps, list):
            self.problems.append(([*path, "dependencies"], f"dependencies is a list of subtask ids, e.g. [1, 2] "
                                  f"([] when the subtask waits for none), not {deps!r}."))
            return [], []
        out, origin = [], []
        for position, number in enumerate(deps):
            dep_path = [*path, "dependencies", position]
            if not _is_id(number):
                self.problems.append((dep_path, self._not_an_id(number)))
            elif number == entry.get("id"):
                self.problems.append((dep_path, f"subtask {number} depends on itself. Remove this entry."))
            elif number not in self.ids:
                self.problems.append((dep_path, self._unknown_id(number)))
            else:
                out.append(self.ids[number])
                origin.append(position)
        return out, origin

    def _unknown_id(self, number: Any) -> str:
        return f"no subtask has id {number!r}. Subtask ids: {', '.join(map(str, self.ids)) or 'none'}."

    def _not_an_id(self, value: Any) -> str:
        hint = ""
        if _digits(value):
            hint = f" Write it without quotes: {int(value)}."
        elif isinstance(value, str):
            named = [number for number, task_id in self.ids.items() if task_id == slug(value)]
            hint = f" Did you mean {named[0]} ({value.strip()})?" if named else ""
        return f"name a subtask by its id, a whole number (1, 2, 3, …), not {value!r}.{hint}"

    def _task_refs(self, key: str, value: Any, path: list) -> Any:
        """`loop.fixes` and `choose.review` (also under `candidates`) may name subtasks by id:
        replaced by their task ids; anything else is left for the canonical checks."""
        if key == "loop" and isinstance(value, dict) and isinstance(value.get("fixes"), list):
            return {**value, "fixes": [self._task_ref(n, [*path, "fixes", i]) for i, n in enumerate(value["fixes"])]}
        if key == "choose" and isinstance(value, dict) and "review" in value:
            return {**value, "review": self._task_ref(value["review"], [*path, "review"])}
        if key == "candidates" and isinstance(value, dict) and isinstance(value.get("choose"), dict):
            return {**value, "choose": self._task_refs("choose", value["choose"], [*path, "choose"])}
        return value

    def _task_ref(self, number: Any, path: list) -> Any:
        if not _is_id(number):
            return number
        if number not in self.ids:
            self.problems.append((path, self._unknown_id(number)))
            return number
        return self.ids[number]

    def _gates(self, gates: Any, tasks: list[dict[str, Any]]) -> None:
        if gates is None:
            return
        if not isinstance(gates, list):
            self.problems.append((["execution_plan", "quality_gates"], "quality_gates is a list of "
                                  "`- {after_task: 2, check: \"pytest -q\"}` items."))
            return
        task_of = {subtask: n for n, subtask in enumerate(self._task_origin)}  # index in subtasks -> task index
        checks: dict[int, list[tuple[int, str]]] = {}
        for position, gate in enumerate(gates):
            path = ["execution_plan", "quality_gates", position]
            if not isinstance(gate, dict):
                self.problems.append((path, "a quality gate is a mapping such as `{after_task: 2, check: \"pytest -q\"}`."))
                continue
            for key in gate:
                if key not in GATE_KEYS:
                    self.problems.append(([*path, key], f"unknown key '{key}' in a quality gate: it holds `after_task:` "
                                          "(a subtask id) and `check:` (a command, or what a person confirms)."))
            number, check = gate.get("after_task"), gate.get("check")
            target = None
            if "after_task" not in gate:
                self.problems.append((path, "a quality gate needs `after_task:`, the id of the subtask it checks."))
            elif not _is_id(number):
                self.problems.append(([*path, "after_task"], self._not_an_id(number)))
            elif number not in self.ids:
                self.problems.append(([*path, "after_task"], self._unknown_id(number)))
            else:
                target = task_of[self._first[number]]
                if "gate" in tasks[target]:
                    self.problems.append(([*path, "after_task"], f"subtask {number} has its own `gate:` already, and a "
                                          "task has one gate: remove this quality gate or the subtask's gate."))
                    target = None
            if not isinstance(check, str) or not check.strip():
                self.problems.append(([*path, "check"] if "check" in gate else path,
                                      "a quality gate needs `check:`, a command (`pytest -q`) or what a person confirms."))
            elif target is not None:
                checks.setdefault(target, []).append((position, check.strip()))
        for target, found in checks.items():
            self._gate_origin[target] = found[0][0]
            if len(found) == 1:
                position, text = found[0]
                command, reason = classify_check(text)
                if reason:
                    self.warnings.append((["execution_plan", "quality_gates", position, "check"],
                                          f"this check becomes an approval a person confirms: {reason}."))
                tasks[target]["gate"] = {"command": command, "message": text} if command else {"approve": True, "message": text}
                continue
            numbered = "\n".join(f"{n}. {text}" for n, (_, text) in enumerate(found, 1))
            tasks[target]["gate"] = {"approve": True, "message": numbered}
            positions = ", ".join(str(p + 1) for p, _ in found)
            self.warnings.append((["execution_plan", "quality_gates", found[1][0]],
                                  f"quality gates {positions} all follow task {tasks[target]['id']}, and a task has one "
                                  "gate: they become one approval in which a person confirms every check (commands are "
                                  "listed, not run). To have a command run, make it a shell subtask that depends on this one."))

    def _groups(self, groups: Any) -> None:
        """Warn where parallel_groups disagree with the dependencies (see the module's rules)."""
        if groups is None:
            return
        base = ["execution_plan", "parallel_groups"]
        if not isinstance(groups, list):
            self.warnings.append((base, "parallel_groups is a list of `- {group: 1, tasks: [1, 2]}` items; ignored."))
            return
        reach = self._reach()
        placed: dict[int, int] = {}  # subtask id -> group position
        members: list[tuple[Any, int, list[tuple[list, int]]]] = []
        for position, group in enumerate(groups):
            path = [*base, position]
            if not isinstance(group, dict) or not isinstance(group.get("tasks"), list):
                self.warnings.append((path, "a parallel group is a mapping such as `{group: 1, tasks: [1, 2]}`; ignored."))
                continue
            inside = []
            for slot, number in enumerate(group["tasks"]):
                at = [*path, "tasks", slot]
                if not _is_id(number) or number not in self.ids:
                    self.warnings.append((at, f"{self._unknown_id(number)} The groups are out of step with the "
                                          "subtasks; Magic Box runs by the dependencies, so this entry is ignored."))
                elif number in placed:
                    self.warnings.append((at, f"subtask {self._label(number)} is in an earlier group too; ignored here."))
                else:
                    placed[number] = position
                    inside.append((at, number))
            members.append((group.get("group"), position, inside))
        if all(_is_id(label) for label, _, _ in members):
            members.sort(key=lambda m: (m[0], m[1]))
        earlier: list[int] = []
        for label, position, inside in members:
            name = f"group {label}" if label is not None else f"the {_ordinal(position)} group"
            for at, number in inside:
                waits = [n for _, n in inside if n != number and n in reach[number]]
                if waits:
                    self.warnings.append((at, f"subtask {self._label(number)} waits for {self._labels(waits)}, yet "
                                          f"{name} holds them together: they cannot run at the same time. Magic Box "
                                          f"runs by the dependencies: {self.ids[number]} starts once they have finished."))
                before = [n for n in earlier if n not in reach[number]]
                reversed_ = [n for n in before if number in reach[n]]
                unordered = [n for n in before if n not in reversed_]
                if reversed_:
                    wait = "it waits" if len(reversed_) == 1 else "they wait"
                    self.warnings.append((at, f"the groups put {self._labels(reversed_)} before subtask "
                                          f"{self._label(number)}, which {wait} for: Magic Box "
                                          f"runs by the dependencies, so {self.ids[number]} runs first."))
                if unordered:
                    them, finish = ("it", "it finishes") if len(unordered) == 1 else ("them", "they finish")
                    self.warnings.append((at, f"the groups put {self._labels(unordered)} before subtask "
                                          f"{self._label(number)}, but it does not depend on {them}: the groups imply an "
                                          "order the dependencies do not. Magic Box runs by the dependencies, so "
                                          f"{self.ids[number]} may start before {finish}; add {them} to its "
                                          "dependencies if it must wait."))
            earlier += [n for _, n in inside]

    def _labels(self, numbers: list[int]) -> str:
        shown = ", ".join(self._label(n) for n in numbers[:LABELS_SHOWN])
        more = f" and {len(numbers) - LABELS_SHOWN} more" if len(numbers) > LABELS_SHOWN else ""
        return ("subtask " if len(numbers) == 1 else "subtasks ") + shown + more

    def _reach(self) -> dict[int, set[int]]:
        """subtask id -> every subtask id it waits for, directly or through others (cycles allowed)."""
        direct: dict[int, set[int]] = {}
        for number, index in self._first.items():
            deps = self.source["subtasks"][index].get("dependencies")
            direct[number] = {d for d in deps if _is_id(d) and d in self.ids and d != number} if isinstance(deps, list) else set()
        reach: dict[int, set[int]] = {}
        for number in direct:
            seen: set[int] = set()
            stack = list(direct[number])
            while stack:
                current = stack.pop()
                if current not in seen:
                    seen.add(current)
                    stack.extend(direct[current])
            reach[number] = seen
        return reach

    # -- the way back -----------------------------------------------------------------------

    def original_path(self, path: list) -> tuple[list, bool]:
        """Map a path of the canonical document to the decomposition's path.

        Returns (path, exact): exact is False when the field was generated (a task's id, its
        prompt) and the path points at the nearest original node instead. Paths of the original
        (subtasks…, execution_plan…, task_analysis…, notes) map to themselves, so `locate` works
        on the original's paths whether or not it translates.
        """
        path = list(path)
        if len(path) >= 3 and path[:2] == ["parallel_execution", "tasks"] and isinstance(path[2], int) \
                and 0 <= path[2] < len(self._task_origin):
            return self._task_path(path[2], path[3:])
        if path[:1] == ["parallel_execution"]:
            return ["subtasks"], path[1:] == ["tasks"]
        if path[:1] in (["name"], ["description"]) and path[0] not in self.source:
            return (["task_analysis", "goal"], False) if self.data.get(path[0]) else ([], False)
        return path, True

    def _task_path(self, index: int, rest: list) -> tuple[list, bool]:
        subtask = self._task_origin[index]
        origin = ["subtasks", subtask]
        entry = self.source["subtasks"][subtask]
        if not rest:
            return origin, True
        field, more = rest[0], rest[1:]
        if field == "id":
            return ([*origin, "name"] if "name" in entry else origin), False
        if field == "depends_on":
            mapping = self._dep_origin[index]
            if more and isinstance(more[0], int) and more[0] < len(mapping):
                return [*origin, "dependencies", mapping[more[0]], *more[1:]], True
            return ([*origin, "dependencies"], True) if "dependencies" in entry else (origin, False)
        if field == "description":
            return ([*origin, "description"], True) if "description" in entry else ([*origin, "name"], False)
        if field == "prompt":
            return ([*origin, "prompt"] if "prompt" in entry else origin), False
        if field == "gate" and index in self._gate_origin:
            gate = ["execution_plan", "quality_gates", self._gate_origin[index]]
            if more and more[0] in ("command", "message"):
                return [*gate, "check"], True
            return gate, not more
        return [*origin, *rest], True


def _located(found: list[tuple[list, str]], locate) -> list[PlanProblem]:
    from orchestration.plans.yaml_source import format_path

    out = []
    for path, message in found:
        line, column = locate(path, at_key=message.startswith("unknown key"))
        out.append(PlanProblem(format_path(path), message, line, column))
    return out


def decomposition_problems(plan: DecompositionPlan, locate) -> list[PlanProblem]:
    """The decomposition form's own faults as located problems. `locate(path, at_key=False) -> (line, column)`,
    e.g. LocatedYaml.locate, called with the original's paths (before or after its translate is set)."""
    return _located(plan.problems, locate)


def decomposition_warnings(plan: DecompositionPlan, locate) -> list[PlanProblem]:
    """The conversion's notices and warnings (made ids, parallel_groups that disagree with the
    dependencies, merged or unrunnable gates) as located PlanProblems; `locate` as for
    decomposition_problems. They do not stop the plan. At most WARNINGS_KEPT, then one saying
    how many more there were."""
    kept = _located(plan.warnings[:WARNINGS_KEPT], locate)
    if len(plan.warnings) > WARNINGS_KEPT:
        kept.append(PlanProblem("execution_plan", f"… and {len(plan.warnings) - WARNINGS_KEPT} more warnings like these."))
    return kept
