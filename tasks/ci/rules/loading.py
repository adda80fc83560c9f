"""Reading rules files and merging them into one list of rules: the default table, then the user's.

A table file is a mapping with a `rules:` list (and an optional `version: 1`). The shipped files
in `default/` are loaded first, in name order, as one table (split by ecosystem only so each is
short enough to read; two of them may not use the same `id`). The user's file (the `RULES_FILE`
setting) may add rules, replace a default rule by giving the same `id`, or switch one off with
`enabled: false`. Each rule is checked by validate.py; `load_rules` raises RulesError listing
every problem of every file.
"""

from __future__ import annotations

from pathlib import Path

from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .model import Rule
from .problems import Problem, RulesError
from .validate import RawRule, RuleReader
from .yamlnodes import compose, line_of, scalar

DEFAULT_RULES = Path(__file__).with_name("default")
# Guards against hostile or accidental monsters; real tables are a few KB.
MAX_FILE_BYTES = 1 << 20
MAX_RULES = 2000


def default_files() -> list[Path]:
    """The shipped table's files, in name order (split by ecosystem; priority decides)."""
    return sorted(DEFAULT_RULES.glob("*.yaml"))


def load_rules(user_file: Path | str | None = None, *,
               include_default: bool = True) -> list[Rule]:
    """The default rules merged with `user_file`'s, best first; raises RulesError if invalid."""
    sets: list[tuple[RuleReader, list[RawRule]]] = []
    defaults = default_files() if include_default else []
    paths = defaults + ([Path(user_file)] if user_file else [])
    for path in paths:
        reader = RuleReader(str(path))
        sets.append((reader, read_file(reader, path)))
    rules, problems = merge(sets, shared=len(defaults))
    if problems:
        raise RulesError(problems)
    return rules


def read_file(reader: RuleReader, path: Path) -> list[RawRule]:
    """The rules of one file, unchecked; the file's own problems go to `reader`."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            reader.problem(None, None, None, f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")
            return []
        data = path.read_bytes()
    except OSError as exc:
        reader.problem(None, None, None, f"cannot read: {exc.strerror or exc}")
        return []
    return read_text(reader, data)


def read_text(reader: RuleReader, data: bytes) -> list[RawRule]:
    """`read_file` for a file's bytes."""
    if len(data) > MAX_FILE_BYTES:
        reader.problem(None, None, None,
                       f"file is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
        return []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reader.problem(None, None, None, f"not UTF-8 text (byte {exc.start})")
        return []
    root, problems = compose(text, reader.name)
    reader.problems += problems
    if problems:
        return []
    if root is None:
        reader.problem(None, None, None, "file is empty; expected a mapping with a 'rules:' list")
        return []
    if not isinstance(root, MappingNode):
        reader.problem(root, None, None, "expected a mapping with a 'rules:' list at the top")
        return []
    rules_node = None
    for k, v in reader.pairs(root, None, "top level", {"rules", "version"}):
        if k == "version":
            version = scalar(v) if isinstance(v, ScalarNode) else None
            if version != 1 or isinstance(version, bool):
                reader.problem(v, None, "version", "only version 1 is known")
        elif k == "rules":
            rules_node = v
    if rules_node is None:
        reader.problem(root, None, "rules", "missing 'rules:' list")
        return []
    if isinstance(rules_node, ScalarNode) and scalar(rules_node) is None:
        return []
    if not isinstance(rules_node, SequenceNode):
        reader.problem(rules_node, None, "rules", "must be a list of rules")
        return []
    if len(rules_node.value) > MAX_RULES:
        reader.problem(rules_node, None, "rules",
                       f"{len(rules_node.value)} rules; the limit is {MAX_RULES}")
        return []
    out = []
    for item in rules_node.value:
        if not isinstance(item, MappingNode):
            reader.problem(item, None, None, "each rule must be a mapping (id:, category:, ...)")
            continue
        out.append(reader.head(item))
    return out


def merge(reader_sets: list[tuple[RuleReader, list[RawRule]]],
          shared: int = 0) -> tuple[list[Rule], list[Problem]]:
    """Later files override earlier ones by id; duplicates within one file are errors, and so
    are duplicates across the first `shared` files (the default table, split over files)."""
    problems: list[Problem] = []
    merged: dict[str, RawRule] = {}
    table_seen: dict[str, RawRule] = {}
    for index, (reader, raws) in enumerate(reader_sets):
        seen: dict[str, RawRule] = table_seen if index < shared else {}
        for raw in raws:
            if raw.id is not None and raw.id in seen:
                first = seen[raw.id]
                where = (f"line {line_of(first.node)}" if first.file == raw.file
                         else f"{first.file}:{line_of(first.node)}")
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
