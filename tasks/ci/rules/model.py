"""A validated rule: its category, conditions, reaction, and the categories a rule may name.

These are plain frozen values built by validate.py from a rules file and read by table.py when
it compiles the table and decides which rule wins; nothing here reads YAML or logs. The
description template syntax is here too: validate.py checks it, table.py fills it in.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from .result import Reaction

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
# A description's {name} or {name|fallback}: the text a named capture of the rule's patterns
# matched, or the fallback when that capture did not take part in the match.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([^{}]*))?\}")


@dataclass(frozen=True)
class Conditions:
    """Match or exclude conditions; None means "not constrained"."""

    failure_reasons: frozenset[str] | None = None
    job_names: tuple[str, ...] | None = None
    stages: tuple[str, ...] | None = None
    exit_codes: frozenset[int] | None = None
    log: tuple[str, ...] = ()

    def meta_holds(
        self, reason: str | None, job: str | None, stage: str | None, code: int | None
    ) -> bool:
        """All metadata conditions given hold (for `match`)."""
        if self.failure_reasons is not None and reason not in self.failure_reasons:
            return False
        if self.job_names is not None and not _glob_any(job, self.job_names):
            return False
        if self.stages is not None and not _glob_any(stage, self.stages):
            return False
        return self.exit_codes is None or code in self.exit_codes

    def meta_any(
        self, reason: str | None, job: str | None, stage: str | None, code: int | None
    ) -> bool:
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
    """One validated rule; `order` is its place in the merged files, which breaks priority ties."""

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
    warning_lines: bool = False  # lines at warning level (table.WARNING_LINE) count as evidence


def fill_description(template: str, captures: dict[str, str]) -> str:
    """`template` with each placeholder replaced by its capture (or fallback, or "?")."""
    # Not str.format: a description must not reach attributes ({x.__class__}) or fail on braces.
    return PLACEHOLDER.sub(
        lambda m: captures.get(m.group(1)) or (m.group(2) if m.group(2) is not None else "?"),
        template,
    )
