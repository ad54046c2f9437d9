"""Parse YAML while remembering where every value came from (line and column), for messages."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from orchestration.plans.errors import PlanProblem

PathPart = str | int


class LocatedYaml:
    """A parsed YAML document plus its node tree, so a field path can be turned into a position.

    data: the document as plain Python (dicts, lists, scalars), via yaml.SafeLoader.
    Raises PlanProblem-carrying YamlError when the text is not valid YAML.
    """

    def __init__(self, text: str) -> None:
        self.root = yaml.compose(text, Loader=yaml.SafeLoader)
        self.data = yaml.load(text, Loader=yaml.SafeLoader)

    def locate(self, path: Sequence[PathPart], at_key: bool = False) -> tuple[int, int]:
        """Return the 1-based (line, column) of the value at `path`, or of its key when at_key.

        Walks as deep as the path exists; (0, 0) when the document is empty.
        """
        node = self.root
        mark = node.start_mark if node is not None else None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                found = None
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                        found = (key_node, value_node)
                if found is None:
                    break
                mark = found[0].start_mark if at_key and part == path[-1] else found[1].start_mark
                node = found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                mark = node.start_mark
            else:
                break
        if mark is None:
            return 0, 0
        return mark.line + 1, mark.column + 1

    def duplicate_keys(self) -> list[PlanProblem]:
        """Problems for mapping keys that appear twice (YAML loaders silently keep the last)."""
        problems: list[PlanProblem] = []

        def walk(node: yaml.Node, path: list[PathPart]) -> None:
            if isinstance(node, yaml.MappingNode):
                seen: dict[str, int] = {}
                for key_node, value_node in node.value:
                    key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                    if key is not None and key in seen:
                        problems.append(
                            PlanProblem(
                                field=format_path([*path, key]),
                                message=f"the key '{key}' appears twice in this mapping (first on line "
                                f"{seen[key]}); YAML would silently keep only the last. Remove or rename one.",
                                line=key_node.start_mark.line + 1,
                                column=key_node.start_mark.column + 1,
                            )
                        )
                    elif key is not None:
                        seen[key] = key_node.start_mark.line + 1
                    walk(value_node, [*path, key if key is not None else "?"])
            elif isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    walk(item, [*path, index])

        if self.root is not None:
            walk(self.root, [])
        return problems


def yaml_error_problem(error: yaml.YAMLError) -> PlanProblem:
    """Turn PyYAML's exception into a located problem with a hint on the usual causes."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    message = f"not valid YAML: {problem}" + (f" ({context})" if context else "")
    if "mapping values are not allowed" in problem:
        message += ". A colon followed by a space starts a mapping: quote the value if it contains ': '."
    elif "expected <block end>, but found '-'" in problem or "block sequence" in problem:
        message += (
            ". A key cannot hold a mapping and a list at once: put the list under its own key "
            "(for example `tasks:`)."
        )
    elif "expected <block end>" in problem:
        message += ". Check the indentation of this line: it must line up with the keys of the same mapping."
    elif "found character '\\t'" in problem:
        message += ". YAML indents with spaces, not tabs."
    return PlanProblem(
        field="",
        message=message,
        line=mark.line + 1 if mark else 0,
        column=mark.column + 1 if mark else 0,
    )


def format_path(path: Sequence[PathPart]) -> str:
    """("a", "tasks", 2, "id") -> "a.tasks[2].id"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
