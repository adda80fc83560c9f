"""The compiled rules table: `load_table`, and how a table classifies one failed job.

`load_table` reads and checks the files (loading.py, validate.py) and compiles every rule's
patterns into one engine (engine.py), so a log is read once for all rules. Classifying is then
two steps: `scan` reads the log, `decide` picks the winning rule from what the scan saw and the
job's GitLab fields (the lowest `priority` wins; the other matching rules are `also_matched`).
The layered classifier (classifier.py) calls `scan`, `matching` and `result` itself, to read
more from the same scan.

CATEGORIES, Problem, Rule and RulesError are re-exported here: code outside this package
imports them from `tasks.ci.rules.table`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, cast

from . import reasons
from .engine import Engine, Pattern, ScanResult, compile_re2
from .facts import LINE_PREFIX, find_exit_code
from .loading import load_rules
from .model import CATEGORIES, Rule, fill_description
from .problems import Problem, RulesError
from .reading import read_chunks
from .result import Classification

__all__ = [
    "CATEGORIES",
    "WARNING_LINE",
    "Problem",
    "Rule",
    "RuleTable",
    "RulesError",
    "check_files",
    "exit_code_of",
    "load_table",
]

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
# How much of the log's end is searched for the exit code GitLab's runner printed.
_EXIT_CODE_TAIL = 64 * 1024


def load_table(
    user_file: Path | str | None = None,
    *,
    include_default: bool = True,
    use_hyperscan: bool | None = None,
) -> RuleTable:
    """The shipped default table merged with `user_file`; raises RulesError listing every problem.

    Call it once at start-up (a worker must not start with a broken table) and keep the result:
    compiling is the expensive part, classifying is cheap.
    """
    rules = load_rules(user_file, include_default=include_default)
    return RuleTable(rules, use_hyperscan=use_hyperscan)


def check_files(user_file: Path | None = None, *, include_default: bool = True) -> list[Problem]:
    """Every problem in the default table merged with `user_file` (no exception)."""
    try:
        load_table(user_file, include_default=include_default)
    except RulesError as exc:
        return exc.problems
    return []


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
            return self.engine.scan(())
        if hasattr(chunks, "read"):  # a binary file object: read ahead, in blocks if it can be
            return self.engine.scan(read_chunks(cast(BinaryIO, chunks)))
        return self.engine.scan(chunks)

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
        """The Classification for `winners` (rule indexes, the first one decides)."""
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
            description=(fill_description(top.description, captures)
                         or top.category.replace("_", " ")),
            next_steps=top.next_steps,
            reaction=top.reaction,
            evidence=list(evidence),
            matched_lines=hits.count if hits else 0,
            also_matched=[self.rules[i].id for i in winners[1:]],
        )


def exit_code_of(scan: ScanResult) -> int | None:
    """The script's exit code as GitLab's runner printed it at the end of the log."""
    if not scan.tail:
        return None
    block = scan.tail[-1][0]
    found = find_exit_code(block[-_EXIT_CODE_TAIL:])
    if found is None and len(scan.tail) > 1 and len(block) < _EXIT_CODE_TAIL:
        found = find_exit_code(scan.tail[-2][0][-_EXIT_CODE_TAIL:])
    return found
