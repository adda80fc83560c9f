"""Load, validate and merge rules tables (YAML), and classify a job with the result.

A table file is a mapping with a `rules:` list (and an optional `version: 1`). The shipped
files in `default/` are loaded first, as one table; the user's file (the `RULES_FILE` setting)
may add rules, replace a default rule by giving the same `id`, or switch one off with
`enabled: false`.

Validation collects *every* problem before raising, each with file, line, rule id and field,
because a person fixing a rules file wants the whole list, not one error per run.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from . import reasons
from .engine import Engine, Pattern, ScanResult, compile_re2, read_chunks
from .facts import LINE_PREFIX
from .result import REACTION_KINDS, Classification, Reaction

DEFAULT_RULES = Path(__file__).with_name("default")


def default_files() -> list[Path]:
    """The shipped table's files, in name order (split by ecosystem; priority decides)."""
    return sorted(DEFAULT_RULES.glob("*.yaml"))

CATEGORIES = (
    "compile_error",
    "test_failure",
    "flaky_test",
    "oom_killed",
    "job_timeout",
    "runner_system_failure",
    "network_error",
    "dependency_resolution",
    "docker_rate_limit",
    "disk_full",
    "lint_failure",
    "security_scan_failure",
    "unknown",
)
# Guards against hostile or accidental monsters; real tables are a few KB.
MAX_FILE_BYTES = 1 << 20
MAX_RULES = 2000
MAX_PATTERN_CHARS = 4000
DEFAULT_PRIORITY = 100
MAX_RETRIES_LIMIT = 10

RULE_KEYS = {"id", "category", "description", "priority", "match", "exclude", "reaction", "next_steps",
             "enabled", "warning_lines"}
MATCH_KEYS = {"failure_reason", "job_name", "stage", "exit_code", "log"}
EXCLUDE_KEYS = MATCH_KEYS | {"lines"}
REACTION_KEYS = {"kind", "max_retries", "labels"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
# {name} or {name|fallback}: the fallback is shown when the capture did not take part in the match.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([^{}]*))?\}")
# A line the CI platform itself marks as a warning reports something the step went on from:
# GitHub Actions' and Azure Pipelines' annotations (`##[warning]`, `[warning]` as downloaded,
# `::warning file=...::`, `##vso[task.logissue type=warning]`, and `Warning: ` as the web view
# renders them). Passing jobs print these about caches, mirrors and retries, so for every rule
# such a line is not evidence that the job failed; a rule whose findings are printed that way
# (an analyzer that fails on warnings) says `warning_lines: true`. Matched after CI prefixes
# (timestamps, BuildKit's `#5 0.98`), never inside a line: a warning quoted in an error is an
# error. Not a tool's own log level (Maven's upper-case `[WARNING]`, `npm WARN`, apt's `W:`,
# `WARNING:`): tools print real causes at that level ("[WARNING] Could not transfer metadata
# ... Connection timed out", "npm WARN tar ENOSPC", "W: Failed to fetch", "WARNING: DATA RACE").
WARNING_LINE = (r"^" + LINE_PREFIX + r"\s*(?:##\[warning\]|\[warning\]|::warning(?:\s[^:]*)?::"
                r"|##vso\[task\.logissue type=warning|Warning: )")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    rule: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [where]
        if self.rule:
            parts.append(f"rule {self.rule}")
        if self.field:
            parts.append(self.field)
        return ": ".join(parts) + f": {self.message}"


class RulesError(Exception):
    """The rules table is invalid; `problems` has every one, str() lists them one per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(
            f"invalid rules table ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}):\n"
            + "\n".join(f"  {p}" for p in self.problems)
        )


@dataclass(frozen=True)
class Conditions:
    """Match or exclude conditions; None means "not constrained"."""

    failure_reasons: frozenset[str] | None = None
    job_names: tuple[str, ...] | None = None
    stages: tuple[str, ...] | None = None
    exit_codes: frozenset[int] | None = None
    log: tuple[str, ...] = ()

    def meta_holds(self, reason: str | None, job: str | None, stage: str | None, code: int | None) -> bool:
        """All metadata conditions given hold (for `match`)."""
        if self.failure_reasons is not None and reason not in self.failure_reasons:
            return False
        if self.job_names is not None and not _glob_any(job, self.job_names):
            return False
        if self.stages is not None and not _glob_any(stage, self.stages):
            return False
        if self.exit_codes is not None and code not in self.exit_codes:
            return False
        return True

    def meta_any(self, reason: str | None, job: str | None, stage: str | None, code: int | None) -> bool:
        """Any metadata condition given holds (for `exclude`): an unknown value never excludes."""
        return (
            (self.failure_reasons is not None and reason in self.failure_reasons)
            or (self.job_names is not None and _glob_any(job, self.job_names))
            or (self.stages is not None and _glob_any(stage, self.stages))
            or (self.exit_codes is not None and code in self.exit_codes)
        )


def _glob_any(value: str | None, globs: tuple[str, ...]) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(value, g) for g in globs)


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    description: str
    priority: int
    order: int
    match: Conditions
    exclude: Conditions
    exclude_lines: tuple[str, ...]
    reaction: Reaction
    next_steps: str
    source: str  # file:line, for messages
    warning_lines: bool = False  # lines at warning level (WARNING_LINE) count as evidence


# -- YAML with line numbers ---------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """Anchors/aliases are refused outright: they buy nothing in a rules file and are the
    billion-laughs vector."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a rules file", event.start_mark
            )
        return super().compose_node(parent, index)


def _line(node: Node) -> int:
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


def _compose(text: str, name: str) -> tuple[Node | None, list[Problem]]:
    try:
        if _CLoader is not None:
            # libyaml composes ~10x faster and caps nesting depth itself; aliases come back as
            # shared nodes (not expanded), which _first_shared spots.
            loader = _CLoader(text)
        else:
            loader = _NoAliasLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
        shared = _first_shared(root) if root is not None else None
        if shared is not None:
            return None, [
                Problem(name, _line(shared), None, None, "aliases (*name) are not allowed in a rules file")
            ]
        return root, []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        return None, [Problem(name, mark.line + 1 if mark else None, None, None, f"not valid YAML: {msg}")]
    except yaml.YAMLError as exc:
        return None, [Problem(name, None, None, None, f"not valid YAML: {exc}")]
    except RecursionError:
        return None, [Problem(name, None, None, None, "not valid YAML: nested too deeply")]


_CLoader = getattr(yaml, "CSafeLoader", None)


class _Bad:
    """A scalar PyYAML cannot build (bad explicit tag, impossible date): fails every type check."""

    def __repr__(self) -> str:
        return "<unreadable value>"


def _scalar(node: Node) -> Any:
    """A scalar's Python value with YAML 1.1 safe typing (int, bool, str, ...)."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except Exception:  # tags like !!python/object, !!int "x": a value error, not a crash
        return _Bad()


# -- validation -----------------------------------------------------------------------------------


@dataclass
class _Raw:
    """One rule as read from a file, before merging (built into a Rule only if it survives)."""

    id: str | None
    node: MappingNode
    file: str
    enabled: bool = True


class _Reader:
    def __init__(self, name: str):
        self.name = name
        self.problems: list[Problem] = []

    def problem(self, node: Node | None, rule: str | None, fld: str | None, msg: str) -> None:
        self.problems.append(Problem(self.name, _line(node) if node is not None else None, rule, fld, msg))

    def read_file(self, path: Path) -> list[_Raw]:
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                self.problem(None, None, None, f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")
                return []
            data = path.read_bytes()
        except OSError as exc:
            self.problem(None, None, None, f"cannot read: {exc.strerror or exc}")
            return []
        return self.read_text(data)

    def read_text(self, data: bytes) -> list[_Raw]:
        if len(data) > MAX_FILE_BYTES:
            self.problem(None, None, None, f"file is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
            return []
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problem(None, None, None, f"not UTF-8 text (byte {exc.start})")
            return []
        root, problems = _compose(text, self.name)
        self.problems += problems
        if problems:
            return []
        if root is None:
            self.problem(None, None, None, "file is empty; expected a mapping with a 'rules:' list")
            return []
        if not isinstance(root, MappingNode):
            self.problem(root, None, None, "expected a mapping with a 'rules:' list at the top")
            return []
        rules_node = None
        for k, v in self._pairs(root, None, "top level", {"rules", "version"}):
            if k == "version":
                version = _scalar(v) if isinstance(v, ScalarNode) else None
                if version != 1 or isinstance(version, bool):
                    self.problem(v, None, "version", "only version 1 is known")
            elif k == "rules":
                rules_node = v
        if rules_node is None:
            self.problem(root, None, "rules", "missing 'rules:' list")
            return []
        if isinstance(rules_node, ScalarNode) and _scalar(rules_node) is None:
            return []
        if not isinstance(rules_node, SequenceNode):
            self.problem(rules_node, None, "rules", "must be a list of rules")
            return []
        if len(rules_node.value) > MAX_RULES:
            self.problem(rules_node, None, "rules", f"{len(rules_node.value)} rules; the limit is {MAX_RULES}")
            return []
        out = []
        for item in rules_node.value:
            if not isinstance(item, MappingNode):
                self.problem(item, None, None, "each rule must be a mapping (id:, category:, ...)")
                continue
            out.append(self._rule_head(item))
        return out

    def _pairs(self, node: MappingNode, rule: str | None, where: str, allowed: set[str]):
        """(key, value node) pairs, reporting unknown, duplicate and non-string keys."""
        seen: set[str] = set()
        for knode, vnode in node.value:
            key = _scalar(knode) if isinstance(knode, ScalarNode) else None
            if not isinstance(key, str):
                self.problem(knode, rule, where, "keys must be plain strings")
                continue
            if key in seen:
                self.problem(knode, rule, key, f"duplicate key in {where}")
                continue
            seen.add(key)
            if key not in allowed:
                self.problem(knode, rule, key, f"unknown key in {where} (known: {', '.join(sorted(allowed))})")
                continue
            yield key, vnode

    def _rule_head(self, node: MappingNode) -> _Raw:
        rid = None
        enabled = True
        for knode, vnode in node.value:
            key = _scalar(knode) if isinstance(knode, ScalarNode) else None
            if key == "id" and isinstance(vnode, ScalarNode):
                value = _scalar(vnode)
                rid = str(value) if value is not None else None
            elif key == "enabled" and isinstance(vnode, ScalarNode):
                enabled = _scalar(vnode) is not False
        return _Raw(rid, node, self.name, enabled)

    # ---- one rule ----

    def build(self, raw: _Raw, order: int) -> Rule | None:
        before = len(self.problems)
        rid = raw.id or "?"
        node = raw.node
        values: dict[str, Node] = dict(self._pairs(node, rid, "rule", RULE_KEYS))
        if raw.id is None or not _ID.match(raw.id):
            self.problem(values.get("id", node), raw.id, "id", "required: letters, digits, '-', '_', '.' (max 100)")
        category = self._str(values.get("category"), rid, "category", required=True)
        if category is not None and category not in CATEGORIES:
            self.problem(values["category"], rid, "category", f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
        description = self._str(values.get("description"), rid, "description") or ""
        next_steps = self._str(values.get("next_steps"), rid, "next_steps") or ""
        priority = DEFAULT_PRIORITY
        if "priority" in values:
            p = _scalar(values["priority"]) if isinstance(values["priority"], ScalarNode) else None
            if not isinstance(p, int) or isinstance(p, bool) or not -1_000_000 <= p <= 1_000_000:
                self.problem(values["priority"], rid, "priority", "must be a whole number (lower runs first)")
            else:
                priority = p
        if "enabled" in values:
            en = _scalar(values["enabled"]) if isinstance(values["enabled"], ScalarNode) else None
            if not isinstance(en, bool):
                self.problem(values["enabled"], rid, "enabled", "must be true or false")
        warning_lines = False
        if "warning_lines" in values:
            wl = _scalar(values["warning_lines"]) if isinstance(values["warning_lines"], ScalarNode) else None
            if not isinstance(wl, bool):
                self.problem(values["warning_lines"], rid, "warning_lines", "must be true or false")
            else:
                warning_lines = wl
        before_match = len(self.problems)
        match, _ = self._conditions(values.get("match"), rid, "match", MATCH_KEYS)
        match_ok = len(self.problems) == before_match
        exclude, lines = self._conditions(values.get("exclude"), rid, "exclude", EXCLUDE_KEYS)
        if "match" not in values:
            self.problem(node, rid, "match", "required: at least one condition (failure_reason, job_name, stage, exit_code, log)")
        elif match == Conditions() and match_ok:
            # Only when match itself parsed cleanly: a bad pattern already says what is wrong.
            self.problem(values["match"], rid, "match", "has no condition; the rule would match every job")
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
            source=f"{self.name}:{_line(node)}",
            warning_lines=warning_lines,
        )

    def _str(self, node: Node | None, rid: str, fld: str, required: bool = False) -> str | None:
        if node is None:
            if required:
                self.problem(None, rid, fld, "required")
            return None
        value = _scalar(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str) or (required and not value.strip()):
            self.problem(node, rid, fld, "must be a non-empty string" if required else "must be a string")
            return None
        return value

    def _list(self, node: Node, rid: str, fld: str, typ: type) -> list[tuple[Node, Any]] | None:
        """A scalar or a list of scalars of one type, as (node, value) pairs."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        out = []
        ok = True
        for item in items:
            value = _scalar(item) if isinstance(item, ScalarNode) else None
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

    def _conditions(self, node: Node | None, rid: str, where: str, allowed: set[str]) -> tuple[Conditions, tuple[str, ...]]:
        if node is None:
            return Conditions(), ()
        if not isinstance(node, MappingNode):
            self.problem(node, rid, where, "must be a mapping of conditions")
            return Conditions(), ()
        kw: dict[str, Any] = {}
        lines: tuple[str, ...] = ()
        for key, vnode in self._pairs(node, rid, where, allowed):
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
            self.problem(node, rid, fld, f"pattern is {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}")
            return False
        try:
            rx = compile_re2(pattern)
        except Exception as exc:  # re2.error: message says what and where
            msg = exc.args[0] if exc.args else exc
            if isinstance(msg, bytes):
                msg = msg.decode("utf-8", "replace")
            hint = ""
            if re.search(r"\\[1-9]|\(\?<?[=!]", pattern):
                hint = " (backreferences and lookaround are not supported: rules must run in linear time)"
            self.problem(node, rid, fld, f"bad regular expression: {msg}{hint}")
            return False
        if rx.search(b"") is not None:
            self.problem(node, rid, fld, "pattern matches an empty line, so it would match every line")
            return False
        return True

    def _reaction(self, node: Node | None, rid: str) -> Reaction:
        if node is None:
            return Reaction()
        if isinstance(node, ScalarNode):
            kind = _scalar(node)
            if kind not in REACTION_KINDS:
                self.problem(node, rid, "reaction", f"unknown reaction {kind!r} (known: {', '.join(REACTION_KINDS)})")
                return Reaction()
            if kind == "label":
                self.problem(node, rid, "reaction", "label needs labels: use {kind: label, labels: [...]}")
            return Reaction(kind=kind, max_retries=1 if kind == "retry" else 0)
        if not isinstance(node, MappingNode):
            self.problem(node, rid, "reaction", "must be a kind (retry, fix, label, none) or a mapping")
            return Reaction()
        values = dict(self._pairs(node, rid, "reaction", REACTION_KEYS))
        kind = self._str(values.get("kind"), rid, "reaction.kind", required=True)
        if kind is not None and kind not in REACTION_KINDS:
            self.problem(values["kind"], rid, "reaction.kind", f"unknown reaction {kind!r} (known: {', '.join(REACTION_KINDS)})")
        max_retries = 1 if kind == "retry" else 0
        if "max_retries" in values:
            v = _scalar(values["max_retries"]) if isinstance(values["max_retries"], ScalarNode) else None
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_RETRIES_LIMIT:
                self.problem(values["max_retries"], rid, "reaction.max_retries", f"must be a whole number 0..{MAX_RETRIES_LIMIT}")
            else:
                max_retries = v
        labels: list[str] = []
        if "labels" in values:
            items = self._list(values["labels"], rid, "reaction.labels", str)
            labels = [v for _, v in items or ()]
        if kind == "label" and not labels:
            self.problem(node, rid, "reaction.labels", "a label reaction needs at least one label")
        return Reaction(kind=kind if kind in REACTION_KINDS else "none", max_retries=max_retries, labels=labels)

    def _placeholders(self, node: Node | None, description: str, patterns: tuple[str, ...], rid: str) -> None:
        names: set[str] = set()
        for p in patterns:
            names |= set(re.findall(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>", p))
        for name, _ in _PLACEHOLDER.findall(description):
            if name not in names:
                self.problem(node, rid, "description", f"{{{name}}} is not a named capture (?P<{name}>...) of this rule's log patterns")


# -- the table ------------------------------------------------------------------------------------


def _merge(reader_sets: list[tuple[_Reader, list[_Raw]]],
           shared: int = 0) -> tuple[list[Rule], list[Problem]]:
    """Later files override earlier ones by id; duplicates within one file are errors, and so
    are duplicates across the first `shared` files (the default table, split over files)."""
    problems: list[Problem] = []
    merged: dict[str, _Raw] = {}
    table_seen: dict[str, _Raw] = {}
    for index, (reader, raws) in enumerate(reader_sets):
        seen: dict[str, _Raw] = table_seen if index < shared else {}
        for raw in raws:
            if raw.id is not None and raw.id in seen:
                first = seen[raw.id]
                where = f"line {_line(first.node)}" if first.file == raw.file else \
                    f"{first.file}:{_line(first.node)}"
                reader.problem(raw.node, raw.id, "id", f"duplicate id (first at {where})")
                continue
            if raw.id is not None:
                seen[raw.id] = raw
                merged.pop(raw.id, None)  # re-inserting moves an override to its file's order
                merged[raw.id] = raw
            else:
                merged[f"\0{id(raw)}"] = raw
    rules: list[Rule] = []
    readers = {r.name: r for r, _ in reader_sets}
    for order, raw in enumerate(merged.values()):
        reader = readers[raw.file]
        if not raw.enabled and raw.id is not None:
            continue  # switched off: a user file needs only `id` and `enabled: false`
        rule = reader.build(raw, order)
        if rule is not None:
            rules.append(rule)
    for reader, _ in reader_sets:
        # In file order, then line order: how a person reads and fixes them.
        problems += sorted(reader.problems, key=lambda p: p.line or 0)
    rules.sort(key=lambda r: (r.priority, r.order))
    return rules, problems


def check_files(user_file: Path | None = None, *, include_default: bool = True) -> list[Problem]:
    """Every problem in the default table merged with `user_file` (no exception)."""
    try:
        load_table(user_file, include_default=include_default)
    except RulesError as exc:
        return exc.problems
    return []


def load_table(
    user_file: Path | str | None = None,
    *,
    include_default: bool = True,
    use_hyperscan: bool | None = None,
) -> "RuleTable":
    """The shipped default table merged with `user_file`; raises RulesError listing every problem.

    Call it once at start-up (a worker must not start with a broken table) and keep the result:
    compiling is the expensive part, classifying is cheap.
    """
    sets: list[tuple[_Reader, list[_Raw]]] = []
    defaults = default_files() if include_default else []
    paths = defaults + ([Path(user_file)] if user_file else [])
    for path in paths:
        reader = _Reader(str(path))
        sets.append((reader, reader.read_file(path)))
    rules, problems = _merge(sets, shared=len(defaults))
    if problems:
        raise RulesError(problems)
    return RuleTable(rules, use_hyperscan=use_hyperscan)


class RuleTable:
    """A compiled, validated table. Thread-safe: `classify` keeps its state per call."""

    def __init__(self, rules: list[Rule], use_hyperscan: bool | None = None):
        self.rules = list(rules)
        patterns: list[Pattern] = []
        line_excludes: dict[int, list[Any]] = {}
        warning = compile_re2(WARNING_LINE)
        for i, rule in enumerate(self.rules):
            for p in rule.match.log:
                patterns.append(Pattern(i, p, compile_re2(p)))
            for p in rule.exclude.log:
                patterns.append(Pattern(i, p, compile_re2(p), veto=True))
            excludes = [compile_re2(p) for p in rule.exclude_lines]
            if rule.match.log and not rule.warning_lines:
                excludes.append(warning)
            if excludes:
                line_excludes[i] = excludes
        self.engine = Engine(patterns, line_excludes, use_hyperscan=use_hyperscan)
        # Rules that need no log line: they are tried on every job; the others only when the
        # scan saw one of their patterns (most of a big table, for most logs, is never looked at).
        self._without_log = frozenset(i for i, r in enumerate(self.rules) if not r.match.log)

    @property
    def backend(self) -> str:
        return self.engine.backend

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def scan(self, chunks: Iterable[bytes] | BinaryIO | None) -> ScanResult:
        """One pass over a log for every rule (see engine.py); `decide` turns it into a verdict."""
        if chunks is None:
            chunks = ()
        elif hasattr(chunks, "read"):
            chunks = read_chunks(chunks)  # type: ignore[arg-type]
        return self.engine.scan(chunks)  # type: ignore[arg-type]

    def classify(
        self,
        chunks: Iterable[bytes] | BinaryIO | None,
        *,
        failure_reason: str | None = None,
        job_name: str | None = None,
        stage: str | None = None,
        exit_code: int | None = None,
    ) -> Classification:
        """Classify one failed job from its log chunks (may be empty or None) and webhook fields.

        Without `exit_code`, the one GitLab printed at the end of the log is used."""
        scan = self.scan(chunks)
        if exit_code is None:
            exit_code = exit_code_of(scan)
        return self.decide(scan, failure_reason=failure_reason, job_name=job_name, stage=stage,
                           exit_code=exit_code)

    def matching(self, scan: ScanResult, *, failure_reason: str | None = None,
                 job_name: str | None = None, stage: str | None = None,
                 exit_code: int | None = None) -> list[int]:
        """Indexes of the rules that match, best first."""
        reason = reasons.normalise(failure_reason)
        winners: list[int] = []
        for i in sorted(self._without_log.union(scan.hits)):
            rule = self.rules[i]
            if not rule.match.meta_holds(reason, job_name, stage, exit_code):
                continue
            if i in scan.vetoed or rule.exclude.meta_any(reason, job_name, stage, exit_code):
                continue
            winners.append(i)
        return winners

    def decide(self, scan: ScanResult, *, failure_reason: str | None = None,
               job_name: str | None = None, stage: str | None = None,
               exit_code: int | None = None, prefer: int | None = None) -> Classification:
        """The verdict of the rules on one scan: the best match (or `prefer`, one of them)."""
        winners = self.matching(scan, failure_reason=failure_reason, job_name=job_name,
                                stage=stage, exit_code=exit_code)
        if not winners:
            return Classification()
        if prefer is not None and prefer in winners:
            winners.remove(prefer)
            winners.insert(0, prefer)
        return self.result(scan, winners)

    def result(self, scan: ScanResult, winners: list[int]) -> Classification:
        top = self.rules[winners[0]]
        hits = scan.hits.get(winners[0])
        evidence = hits.evidence if hits else []
        captures: dict[str, str] = {}
        for ev in evidence:
            for k, v in ev.captures.items():
                captures.setdefault(k, v)
        return Classification(
            category=top.category,
            rule_id=top.id,
            description=_format(top.description, captures) or top.category.replace("_", " "),
            next_steps=top.next_steps,
            reaction=top.reaction,
            evidence=list(evidence),
            matched_lines=hits.count if hits else 0,
            also_matched=[self.rules[i].id for i in winners[1:]],
        )


_EXIT_CODE_TAIL = 64 * 1024


def exit_code_of(scan: ScanResult) -> int | None:
    """The script's exit code as GitLab's runner printed it at the end of the log."""
    if not scan.tail:
        return None
    from .facts import find_exit_code

    block = scan.tail[-1][0]
    found = find_exit_code(block[-_EXIT_CODE_TAIL:])
    if found is None and len(scan.tail) > 1 and len(block) < _EXIT_CODE_TAIL:
        found = find_exit_code(scan.tail[-2][0][-_EXIT_CODE_TAIL:])
    return found


def _format(template: str, captures: dict[str, str]) -> str:
    # Not str.format: a description must not reach attributes ({x.__class__}) or fail on braces.
    return _PLACEHOLDER.sub(lambda m: captures.get(m.group(1)) or (m.group(2) if m.group(2) is not None else "?"), template)
