"""The one YAML reader for configuration files: the service's YAML (DEVOPS_AGENT_CONFIG),
WEBHOOK_SECRETS_FILE, and the rules table (through tasks/ci/rules/yamlnodes.py).

It keeps each node's line, so every error can name the file, line and field. Anchors and
aliases are refused: a configuration gains nothing from them, and they are the billion-laughs
vector. libyaml's composer is used when PyYAML was built with it (about ten times faster, and it
caps nesting depth itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tasks.config.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024
ALIAS_MESSAGE = "aliases (*name) are not allowed"


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's own composer, refusing aliases as it meets them (used without libyaml)."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, ALIAS_MESSAGE, event.start_mark)
        return super().compose_node(parent, index)


_CLoader = getattr(yaml, "CSafeLoader", None)


class YamlSyntaxError(Exception):
    """The text is not YAML we read; `line` is where the parser gave up (None: unknown)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


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


def compose(text: str) -> Node | None:
    """The document's root node (None for an empty document), or YamlSyntaxError. The message
    names a token kind or a rule, never the offending value (a secrets file goes through here)."""
    try:
        # libyaml returns aliases as shared nodes (not expanded), which _first_shared spots.
        loader = _CLoader(text) if _CLoader is not None else _NoAliasLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise YamlSyntaxError(mark.line + 1 if mark else None, f"not valid YAML: {msg}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlSyntaxError(None, "not valid YAML: nested too deeply") from None
    shared = _first_shared(root) if root is not None else None
    if shared is not None:
        raise YamlSyntaxError(line_of(shared), f"not valid YAML: {ALIAS_MESSAGE}")
    return root


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


@dataclass
class Document:
    """A YAML file's data with the line of every key path, for errors that say where."""

    path: str
    data: Any
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def line(self, loc: Sequence[object]) -> int:
        """The line of the deepest part of `loc` the file spells out (1 when none is)."""
        parts = tuple(str(p) for p in loc)
        for n in range(len(parts), -1, -1):
            if parts[:n] in self.lines:
                return self.lines[parts[:n]]
        return 1

    def where(self, loc: Sequence[object]) -> str:
        """`file:line: a.b.c` for an error at `loc`."""
        return f"{self.path}:{self.line(loc)}: {'.'.join(str(p) for p in loc)}"


def _build(node: Node, path: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> Any:
    lines.setdefault(path, line_of(node))
    if isinstance(node, MappingNode):
        out: dict[Any, Any] = {}
        for key, value in node.value:
            k = scalar(key) if isinstance(key, ScalarNode) else Unreadable()
            if isinstance(k, (Unreadable, list, dict)):
                k = f"<unreadable key on line {line_of(key)}>"
            child = (*path, str(k))
            lines[child] = line_of(key)
            out[k] = _build(value, child, lines)
            lines[child] = line_of(key)  # the key's own line, not its value's
        return out
    if isinstance(node, SequenceNode):
        return [_build(v, (*path, str(i)), lines) for i, v in enumerate(node.value)]
    return scalar(node)


def parse(text: str, name: str) -> Document:
    """`text` as a Document named `name`; ConfigError `name:line: not valid YAML: ...`."""
    try:
        root = compose(text)
    except YamlSyntaxError as exc:
        raise ConfigError(f"{name}:{exc.line or 1}: {exc.message}") from None
    lines: dict[tuple[str, ...], int] = {}
    data = _build(root, (), lines) if root is not None else None
    return Document(name, data, lines)


def read_text(path: Path | str, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """A configuration file's text; ConfigError naming `what` (the setting that named it)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{path}: larger than {max_bytes} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None


def load(path: Path | str, what: str) -> Document:
    """Read and parse a YAML configuration file (see read_text and parse)."""
    return parse(read_text(path, what), str(path))
