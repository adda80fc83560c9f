"""Manifests parsed as untrusted YAML: a node budget before anything walks it (anchor bombs, deep
nesting), no tags beyond plain data, documents as plain mappings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml

MAX_DOCUMENTS_PER_FILE = 200
MAX_NODE_UNITS = 1_000_000  # per document: nodes plus scalar characters, aliases expanded
MAX_DEPTH = 64


class ManifestError(Exception):
    """The manifests cannot be planned; `problems` name the file and document of each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_documents(text: str, where: str) -> list[tuple[int, Any]]:
    """(document number, value) of every non-empty document, each checked against the expanded
    size and depth bounds before it is constructed."""
    loader = yaml.SafeLoader(text)
    out: list[tuple[int, Any]] = []
    n = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            n += 1
            if n > MAX_DOCUMENTS_PER_FILE:
                raise ManifestError([f"`{where}` holds more than {MAX_DOCUMENTS_PER_FILE} documents"])
            if node is None:
                continue
            _budget(node, f"`{where}` document {n}")
            value = _plain(loader.construct_document(node), f"`{where}` document {n}")
            if value is not None:  # an empty document (a trailing `---`, only comments)
                out.append((n, value))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise ManifestError([f"`{where}` is not valid YAML{at}: "
                             f"{getattr(exc, 'problem', None) or exc}"]) from None
    finally:
        loader.dispose()
    return out


def _budget(root: yaml.Node, where: str) -> None:
    memo: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ManifestError([f"{where} nests deeper than {MAX_DEPTH} levels"])
        key = id(node)
        if key in memo:
            return memo[key]
        if key in open_nodes:
            raise ManifestError([f"{where} refers to itself (a recursive alias)"])
        open_nodes.add(key)
        if isinstance(node, yaml.ScalarNode):
            total = 1 + len(node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child, depth + 1) for child in node.value)
        else:
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        if total > MAX_NODE_UNITS:
            raise ManifestError([f"{where} expands to more than {MAX_NODE_UNITS} nodes and "
                                 "characters (anchors and aliases counted as expanded)"])
        open_nodes.discard(key)
        memo[key] = total
        return total

    size(root, 0)


def _plain(value: Any, where: str) -> Any:
    """JSON-shaped: string keys, dates as the strings they were written as, no binary."""
    if isinstance(value, dict):
        return {_key(k): _plain(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, where) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        raise ManifestError([f"{where} holds a !!binary value; Kubernetes objects are JSON"])
    return value


def _key(k: Any) -> str:
    if isinstance(k, bool):
        return "true" if k else "false"
    if isinstance(k, (str, int, float)):
        return str(k)
    raise ManifestError([f"a mapping key of type {type(k).__name__} is not a JSON key"])
