"""The rules table that classifies failed CI jobs (GitLab issue 3).

Public API (other modules import only these names)::

    from tasks.rules import load_table, RuleTable, Classification, RulesError

    table = load_table(settings.rules_file)   # default table + user file; RulesError if invalid
    result = table.classify(job.trace(iterator=True), failure_reason=..., job_name=...,
                            stage=..., exit_code=...)
    result.category, result.rule_id, result.description, result.next_steps
    result.reaction.kind / .max_retries / .labels     # kind: retry | fix | label | none
    result.evidence[i].line / .text / .captures / .section
    result.matched_lines, result.also_matched, result.to_dict()

`load_table` is also the start-up check: the service calls it once and refuses to start when it
raises (`str(RulesError)` lists every problem as `file:line: rule ID: field: message`).
`check_files(path)` returns the same problems as a list, for `devops-agent rules check`.
`classify` takes any iterable of bytes chunks (or a binary file object); memory stays flat
whatever the log size, and an empty or missing log still classifies on failure_reason/exit_code.

Modules: `table.py` (YAML load, validation, merge, classify), `engine.py` (the streaming scan),
`prefilter.py` (Hyperscan / re2.Set prefilters, compiled-database cache),
`result.py` (returned objects), `reasons.py` (GitLab failure reasons), `cli.py` (commands).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CATEGORIES",
    "Classification",
    "Evidence",
    "Problem",
    "Reaction",
    "Rule",
    "RuleTable",
    "RulesError",
    "check_files",
    "load_table",
]

_FROM = {
    "Classification": ".result",
    "Evidence": ".result",
    "Reaction": ".result",
}


def __getattr__(name: str) -> Any:
    # Lazy: `devops-agent --help` imports tasks.rules.cli, and must not pay for yaml, re2 and
    # hyperscan (a database compile) just to list commands.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_FROM.get(name, ".table"), __name__)
    return getattr(module, name)
