"""Parse YAML while remembering where every value came from (line and column), for messages."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import yaml

from orchestration.plans.errors import PlanProblem

PathPart = object  # a mapping key (usually str) or a list index (int)


MAX_VALUES = 100_000  # values in the document once aliases are expanded
MAX_EXPANDED_CHARS = 8 * 1024 * 1024  # characters of scalars once aliases are expanded


class TooLarge(Exception):
    """The document expands (through anchors and aliases) beyond what a plan may hold."""

    def __init__(self, problem: PlanProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class LocatedYaml:
    """A parsed YAML document plus its node tree, so a field path can be turned into a position.

    data: the document as plain Python (dicts, lists, scalars), via yaml.SafeLoader, parsed once.
    Raises yaml.YAMLError when the text is not valid YAML, TooLarge when aliases would expand it
    past MAX_VALUES values or MAX_EXPANDED_CHARS characters (an "alias bomb"), RecursionError
    when it is nested too deeply.
    """

    def __init__(self, text: str) -> None:
        # Set when `data` was rewritten (the phased form): maps its paths to the text's paths.
        self.translate: Callable[[list], tuple[list, bool]] | None = None
        loader = yaml.SafeLoader(text)
        try:
            self.root = loader.get_single_node()
            self.data = None
            self._duplicates: list[PlanProblem] = []
            if self.root is not None:
                _check_expansion(self.root)
                # Before construction: resolving merge keys (<<) rewrites the mapping nodes.
                self._duplicates = self._find_duplicate_keys()
                self.data = loader.construct_document(self.root)
        finally:
            loader.dispose()

    def locate(self, path: Sequence[PathPart], at_key: bool = False) -> tuple[int, int]:
        """Return the 1-based (line, column) of the value at `path`, or of its key when at_key.

        Walks as deep as the path exists; (0, 0) when the document is empty.
        """
        if self.translate is not None:
            path, _exact = self.translate(list(path))
        node = self.root
        mark = node.start_mark if node is not None else None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                found = None
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and _key_matches(key_node, part):
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

    def field_name(self, path: Sequence[PathPart]) -> str:
        """The dotted name of `path` as the text writes it (through `translate`, when set)."""
        if self.translate is not None:
            path, _exact = self.translate(list(path))
        return format_path(path)

    def duplicate_keys(self) -> list[PlanProblem]:
        """Problems for mapping keys that appear twice (YAML loaders silently keep the last)."""
        return list(self._duplicates)

    def _find_duplicate_keys(self) -> list[PlanProblem]:
        problems: list[PlanProblem] = []
        visited: set[int] = set()

        def walk(node: yaml.Node, path: list[PathPart]) -> None:
            if id(node) in visited:  # an alias: its node was (or is being) checked where anchored
                return
            visited.add(id(node))
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


class PlainDocument:
    """A plan document given as data, with no text behind it (the editor's form): LocatedYaml's
    interface, where nothing has a line. data: the document (dicts, lists, scalars)."""

    def __init__(self, data: object) -> None:
        self.data = data
        self.translate: Callable[[list], tuple[list, bool]] | None = None

    def locate(self, path: Sequence[PathPart], at_key: bool = False) -> tuple[int, int]:
        """(0, 0): there is no text to point into."""
        return 0, 0

    def field_name(self, path: Sequence[PathPart]) -> str:
        """The dotted name of `path` ("parallel_execution.tasks[2].id")."""
        return format_path(path)

    def duplicate_keys(self) -> list[PlanProblem]:
        """[]: data cannot hold a key twice."""
        return []


def _key_matches(key_node: yaml.ScalarNode, part: object) -> bool:
    if isinstance(part, str):
        return key_node.value == part and key_node.tag == "tag:yaml.org,2002:str"
    try:  # a key YAML reads as a number, bool or null (5, 3.5, yes, ~)
        return yaml.constructor.SafeConstructor().construct_object(key_node) == part
    except yaml.YAMLError:
        return False


def _check_expansion(root: yaml.Node) -> None:
    """Raise TooLarge if the node graph expands past the limits; linear in the number of nodes."""
    sizes: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise TooLarge(PlanProblem("", "an alias refers to a mapping or list that contains it, so it never ends. "
                                           "Remove the alias (*name).", node.start_mark.line + 1, node.start_mark.column + 1))
        active.add(key)
        if isinstance(node, yaml.ScalarNode):
            result = (1, len(node.value))
        else:
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
            values, chars = 1, 0
            for child in children:
                child_values, child_chars = size(child)
                values, chars = values + child_values, chars + child_chars
                if values > MAX_VALUES or chars > MAX_EXPANDED_CHARS:
                    raise TooLarge(PlanProblem(
                        "",
                        f"with its aliases (*name) expanded, this document holds more than {MAX_VALUES:,} values or "
                        f"{MAX_EXPANDED_CHARS // (1024 * 1024)} MiB of text, more than any plan needs. Write the values out "
                        "instead of repeating them through anchors and aliases.",
                        node.start_mark.line + 1, node.start_mark.column + 1,
                    ))
            result = (values, chars)
        active.discard(key)
        sizes[key] = result
        return result

    size(root)


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
