"""The rules table that classifies failed CI jobs (GitLab issue 3).

Public API (other modules import only these names)::

    from tasks.rules import load_table, RuleTable, Classification, RulesError

    table = load_table(settings.rules_file)   # default table + user file; RulesError if invalid
    result = table.classify(job.trace(iterator=True), failure_reason=..., job_name=...,
                            stage=..., exit_code=...)
    result.category, result.rule_id, result.description, result.next_steps
    result.reaction.kind / .max_retries / .labels     # kind: retry | fix | label | none
    result.evidence[i].line / .text / .captures / .section
    result.also_matched, result.to_dict()

`load_table` is also the start-up check: the service calls it once and refuses to start when it
raises (`str(RulesError)` lists every problem as `file:line: rule ID: field: message`).
`check_files(path)` returns the same problems as a list, for `devops-agent rules check`.

Modules: `table.py` (YAML load, validation, merge, classify), `engine.py` (the streaming scan),
`result.py` (returned objects), `reasons.py` (GitLab failure reasons), `cli.py` (commands).
"""

from .result import Classification, Evidence, Reaction
from .table import CATEGORIES, Problem, Rule, RulesError, RuleTable, check_files, load_table

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
