"""A rules file's YAML as nodes with line numbers, so every problem can say where it is.

Rules files are read node by node (not with `yaml.safe_load`) because validation reports each
problem at the line of the value that caused it. The composer is the configuration's one YAML
reader (tasks/config/yamlfile.py: aliases refused, libyaml when available); this module only
turns its errors into the rules table's Problems.
"""

from __future__ import annotations

from yaml.nodes import Node

from tasks.config import yamlfile
from tasks.config.yamlfile import line_of

from .problems import Problem

__all__ = ["Unreadable", "compose", "line_of", "scalar"]

_ALIAS_MESSAGE = "aliases (*name) are not allowed in a rules file"


def compose(text: str, name: str) -> tuple[Node | None, list[Problem]]:
    """The document's root node (None for an empty file), or the problems that stop reading it."""
    try:
        return yamlfile.compose(text), []
    except yamlfile.YamlSyntaxError as exc:
        msg = exc.message.replace(yamlfile.ALIAS_MESSAGE, _ALIAS_MESSAGE)
        if exc.line is not None and msg == f"not valid YAML: {_ALIAS_MESSAGE}":
            msg = _ALIAS_MESSAGE
        return None, [Problem(name, exc.line, None, None, msg)]


Unreadable = yamlfile.Unreadable
scalar = yamlfile.scalar
