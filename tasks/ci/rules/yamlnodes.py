"""A rules file's YAML as nodes with line numbers, so every problem can say where it is.

Rules files are read node by node (not with `yaml.safe_load`) because validation reports each
problem at the line of the value that caused it. Anchors and aliases are refused outright: they
buy nothing in a rules file and are the billion-laughs vector. libyaml's composer is used when
PyYAML was built with it (about ten times faster, and it caps nesting depth itself).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from .problems import Problem

_ALIAS_MESSAGE = "aliases (*name) are not allowed in a rules file"


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's own composer, refusing aliases as it meets them (used without libyaml)."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, _ALIAS_MESSAGE, event.start_mark)
        return super().compose_node(parent, index)


_CLoader = getattr(yaml, "CSafeLoader", None)


def line_of(node: Node) -> int:
    """The 1-based line a node starts on."""
    return node.start_mark.line + 1


def _first_shared(root: Node) -> Node | None:
    """A node reachable twice (what an alias makes), found without expanding anything."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return node
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
    return None


def compose(text: str, name: str) -> tuple[Node | None, list[Problem]]:
    """The document's root node (None for an empty file), or the problems that stop reading it."""
    try:
        # libyaml composes ~10x faster and caps nesting depth itself; aliases come back as
        # shared nodes (not expanded), which _first_shared spots.
        loader = _CLoader(text) if _CLoader is not None else _NoAliasLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
        shared = _first_shared(root) if root is not None else None
        if shared is not None:
            return None, [Problem(name, line_of(shared), None, None, _ALIAS_MESSAGE)]
        return root, []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        line = mark.line + 1 if mark else None
        return None, [Problem(name, line, None, None, f"not valid YAML: {msg}")]
    except yaml.YAMLError as exc:
        return None, [Problem(name, None, None, None, f"not valid YAML: {exc}")]
    except RecursionError:
        return None, [Problem(name, None, None, None, "not valid YAML: nested too deeply")]


class Unreadable:
    """A scalar PyYAML cannot build (bad explicit tag, impossible date): fails every type check."""

    def __repr__(self) -> str:
        return "<unreadable value>"


def scalar(node: Node) -> Any:
    """A scalar's Python value with YAML 1.1 safe typing (int, bool, str, ...)."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except Exception:  # noqa: BLE001 - tags like !!python/object, !!int "x": a value error
        return Unreadable()
