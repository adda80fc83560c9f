"""Checking one rule of a rules file and building it: every field, every pattern, every problem.

`RuleReader` is made per file (loading.py makes one for each file it reads). It turns the YAML
node of one rule into a `Rule` (model.py), or into problems: unknown or duplicate keys, values
of the wrong type, unknown categories and failure reasons, patterns google-re2 cannot compile or
that match an empty line, placeholders in a description that no pattern captures. It keeps
going after a problem, so a person fixing a file sees all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from . import reasons
from .engine import compile_re2
from .model import CATEGORIES, PLACEHOLDER, Conditions, Rule
from .problems import Problem
from .result import REACTION_KINDS, Reaction
from .yamlnodes import line_of, scalar

# Guards against hostile or accidental monsters; real patterns are a line or two.
MAX_PATTERN_CHARS = 4000
DEFAULT_PRIORITY = 100
MAX_RETRIES_LIMIT = 10

RULE_KEYS = {"id", "category", "description", "priority", "match", "exclude", "reaction",
             "next_steps", "enabled", "warning_lines"}
MATCH_KEYS = {"failure_reason", "job_name", "stage", "exit_code", "log"}
EXCLUDE_KEYS = MATCH_KEYS | {"lines"}
REACTION_KEYS = {"kind", "max_retries", "labels"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_NAMED_GROUP = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")


@dataclass
class RawRule:
    """One rule as read from a file, before merging (built into a Rule only if it survives)."""

    id: str | None
    node: MappingNode
    file: str
    enabled: bool = True


class RuleReader:
    """The problems of one rules file, and the rules of it that have none."""

    def __init__(self, name: str):
        self.name = name
        self.problems: list[Problem] = []

    def problem(self, node: Node | None, rule: str | None, fld: str | None, msg: str) -> None:
        line = line_of(node) if node is not None else None
        self.problems.append(Problem(self.name, line, rule, fld, msg))

    def pairs(self, node: MappingNode, rule: str | None, where: str,
              allowed: set[str]) -> Iterator[tuple[str, Node]]:
        """(key, value node) pairs, reporting unknown, duplicate and non-string keys."""
        seen: set[str] = set()
        for knode, vnode in node.value:
            key = scalar(knode) if isinstance(knode, ScalarNode) else None
            if not isinstance(key, str):
                self.problem(knode, rule, where, "keys must be plain strings")
                continue
            if key in seen:
                self.problem(knode, rule, key, f"duplicate key in {where}")
                continue
            seen.add(key)
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.problem(knode, rule, key, f"unknown key in {where} (known: {known})")
                continue
            yield key, vnode

    def head(self, node: MappingNode) -> RawRule:
        """The rule's id and `enabled` flag, read leniently: merging needs them before checking."""
        rid = None
        enabled = True
        for knode, vnode in node.value:
            key = scalar(knode) if isinstance(knode, ScalarNode) else None
            if key == "id" and isinstance(vnode, ScalarNode):
                value = scalar(vnode)
                rid = str(value) if value is not None else None
            elif key == "enabled" and isinstance(vnode, ScalarNode):
                enabled = scalar(vnode) is not False
        return RawRule(rid, node, self.name, enabled)

    def build(self, raw: RawRule, order: int) -> Rule | None:
        """The rule, or None when it has problems (each one recorded)."""
        before = len(self.problems)
        rid = raw.id or "?"
        node = raw.node
        values: dict[str, Node] = dict(self.pairs(node, rid, "rule", RULE_KEYS))
        if raw.id is None or not _ID.match(raw.id):
            self.problem(values.get("id", node), raw.id, "id",
                         "required: letters, digits, '-', '_', '.' (max 100)")
        category = self._str(values.get("category"), rid, "category", required=True)
        if category is not None and category not in CATEGORIES:
            self.problem(values["category"], rid, "category",
                         f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
        description = self._str(values.get("description"), rid, "description") or ""
        next_steps = self._str(values.get("next_steps"), rid, "next_steps") or ""
        priority = DEFAULT_PRIORITY
        if "priority" in values:
            p = self._scalar_at(values["priority"])
            if not isinstance(p, int) or isinstance(p, bool) or not -1_000_000 <= p <= 1_000_000:
                self.problem(values["priority"], rid, "priority",
                             "must be a whole number (lower runs first)")
            else:
                priority = p
        if "enabled" in values and not isinstance(self._scalar_at(values["enabled"]), bool):
            self.problem(values["enabled"], rid, "enabled", "must be true or false")
        warning_lines = False
        if "warning_lines" in values:
            wl = self._scalar_at(values["warning_lines"])
            if not isinstance(wl, bool):
                self.problem(values["warning_lines"], rid, "warning_lines", "must be true or false")
            else:
                warning_lines = wl
        before_match = len(self.problems)
        match, _ = self._conditions(values.get("match"), rid, "match", MATCH_KEYS)
        match_ok = len(self.problems) == before_match
        exclude, lines = self._conditions(values.get("exclude"), rid, "exclude", EXCLUDE_KEYS)
        if "match" not in values:
            self.problem(node, rid, "match", "required: at least one condition "
                         "(failure_reason, job_name, stage, exit_code, log)")
        elif match == Conditions() and match_ok:
            # Only when match itself parsed cleanly: a bad pattern already says what is wrong.
            self.problem(values["match"], rid, "match",
                         "has no condition; the rule would match every job")
        reaction = self._reaction(values.get("reaction"), rid)
        self._placeholders(values.get("description"), description, match.log, rid)
        if len(self.problems) != before:
            return None
        return Rule(
            id=raw.id or "?",
            category=category or "unknown",
            description=description,
            priority=priority,
            order=order,
            match=match,
            exclude=exclude,
            exclude_lines=lines,
            reaction=reaction,
            next_steps=next_steps.strip(),
            source=f"{self.name}:{line_of(node)}",
            warning_lines=warning_lines,
        )

    # -- one field ------------------------------------------------------------------------------

    @staticmethod
    def _scalar_at(node: Node) -> Any:
        """The node's value if it is a scalar, else None (a list or mapping where one is due)."""
        return scalar(node) if isinstance(node, ScalarNode) else None

    def _str(self, node: Node | None, rid: str, fld: str, required: bool = False) -> str | None:
        if node is None:
            if required:
                self.problem(None, rid, fld, "required")
            return None
        value = self._scalar_at(node)
        if not isinstance(value, str) or (required and not value.strip()):
            self.problem(node, rid, fld,
                         "must be a non-empty string" if required else "must be a string")
            return None
        return value

    def _list(self, node: Node, rid: str, fld: str, typ: type) -> list[tuple[Node, Any]] | None:
        """A scalar or a list of scalars of one type, as (node, value) pairs."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        out = []
        ok = True
        for item in items:
            value = self._scalar_at(item)
            if typ is int and (not isinstance(value, int) or isinstance(value, bool)):
                self.problem(item, rid, fld, "must be a whole number or a list of them")
                ok = False
            elif typ is str and not (isinstance(value, str) and value):
                self.problem(item, rid, fld, "must be a non-empty string or a list of them")
                ok = False
            else:
                out.append((item, value))
        if not out and ok:
            self.problem(node, rid, fld, "must not be empty")
            ok = False
        return out if ok else None

    def _conditions(self, node: Node | None, rid: str, where: str,
                    allowed: set[str]) -> tuple[Conditions, tuple[str, ...]]:
        """`match` or `exclude`, and (for `exclude`) its `lines` patterns."""
        if node is None:
            return Conditions(), ()
        if not isinstance(node, MappingNode):
            self.problem(node, rid, where, "must be a mapping of conditions")
            return Conditions(), ()
        kw: dict[str, Any] = {}
        lines: tuple[str, ...] = ()
        for key, vnode in self.pairs(node, rid, where, allowed):
            fld = f"{where}.{key}"
            items = self._list(vnode, rid, fld, int if key == "exit_code" else str)
            if items is None:
                continue
            if key == "failure_reason":
                for inode, value in items:
                    if value not in reasons.FAILURE_REASONS:
                        self.problem(inode, rid, fld, f"unknown GitLab failure reason {value!r}")
                kw["failure_reasons"] = reasons.expand([v for _, v in items])
            elif key == "job_name":
                kw["job_names"] = tuple(v for _, v in items)
            elif key == "stage":
                kw["stages"] = tuple(v for _, v in items)
            elif key == "exit_code":
                kw["exit_codes"] = frozenset(v for _, v in items)
            else:
                pats = tuple(v for inode, v in items if self._pattern_ok(inode, v, rid, fld))
                if key == "log":
                    kw["log"] = pats
                else:
                    lines = pats
        return Conditions(**kw), lines

    def _pattern_ok(self, node: Node, pattern: str, rid: str, fld: str) -> bool:
        if len(pattern) > MAX_PATTERN_CHARS:
            self.problem(node, rid, fld, f"pattern is {len(pattern)} characters; "
                         f"the limit is {MAX_PATTERN_CHARS}")
            return False
        try:
            rx = compile_re2(pattern)
        except Exception as exc:  # noqa: BLE001 - re2.error or a bad string: the user's to fix
            msg = exc.args[0] if exc.args else exc
            if isinstance(msg, bytes):
                msg = msg.decode("utf-8", "replace")
            hint = ""
            if re.search(r"\\[1-9]|\(\?<?[=!]", pattern):
                hint = (" (backreferences and lookaround are not supported: "
                        "rules must run in linear time)")
            self.problem(node, rid, fld, f"bad regular expression: {msg}{hint}")
            return False
        if rx.search(b"") is not None:
            self.problem(node, rid, fld,
                         "pattern matches an empty line, so it would match every line")
            return False
        return True

    def _reaction(self, node: Node | None, rid: str) -> Reaction:
        known = ", ".join(REACTION_KINDS)
        if node is None:
            return Reaction()
        if isinstance(node, ScalarNode):
            kind = scalar(node)
            if kind not in REACTION_KINDS:
                self.problem(node, rid, "reaction", f"unknown reaction {kind!r} (known: {known})")
                return Reaction()
            if kind == "label":
                self.problem(node, rid, "reaction",
                             "label needs labels: use {kind: label, labels: [...]}")
            return Reaction(kind=kind, max_retries=1 if kind == "retry" else 0)
        if not isinstance(node, MappingNode):
            self.problem(node, rid, "reaction",
                         "must be a kind (retry, fix, label, none) or a mapping")
            return Reaction()
        values = dict(self.pairs(node, rid, "reaction", REACTION_KEYS))
        kind = self._str(values.get("kind"), rid, "reaction.kind", required=True)
        if kind is not None and kind not in REACTION_KINDS:
            self.problem(values["kind"], rid, "reaction.kind",
                         f"unknown reaction {kind!r} (known: {known})")
        max_retries = 1 if kind == "retry" else 0
        if "max_retries" in values:
            v = self._scalar_at(values["max_retries"])
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_RETRIES_LIMIT:
                self.problem(values["max_retries"], rid, "reaction.max_retries",
                             f"must be a whole number 0..{MAX_RETRIES_LIMIT}")
            else:
                max_retries = v
        labels: list[str] = []
        if "labels" in values:
            items = self._list(values["labels"], rid, "reaction.labels", str)
            labels = [v for _, v in items or ()]
        if kind == "label" and not labels:
            self.problem(node, rid, "reaction.labels", "a label reaction needs at least one label")
        return Reaction(kind=kind if kind in REACTION_KINDS else "none", max_retries=max_retries,
                        labels=labels)

    def _placeholders(self, node: Node | None, description: str, patterns: tuple[str, ...],
                      rid: str) -> None:
        names: set[str] = set()
        for p in patterns:
            names |= set(_NAMED_GROUP.findall(p))
        for name, _ in PLACEHOLDER.findall(description):
            if name not in names:
                self.problem(node, rid, "description", f"{{{name}}} is not a named capture "
                             f"(?P<{name}>...) of this rule's log patterns")
