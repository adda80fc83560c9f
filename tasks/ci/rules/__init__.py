"""The rules table that classifies failed CI jobs.

Public API (other modules import only these names, from `tasks.ci.rules`): `load_table`,
`check_files`, `RuleTable`, `Classification`, `Evidence`, `Reaction`, `Rule`, `Problem`,
`RulesError` and `CATEGORIES`::

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
The layered classifier (`classifier.Classifier`: GitLab's fields, the rules, the context of the
failure, people's corrections) is what the service and `devops-agent classify` run.

Modules, in the order a log meets them:

* the table: `loading.py` (read and merge the YAML files), `yamlnodes.py` (YAML with line
  numbers), `validate.py` (check each rule), `model.py` (a rule, the categories),
  `problems.py` (what is wrong with a file), `reasons.py` (GitLab's failure reasons),
  `table.py` (`load_table`, and picking the winning rule);
* the scan: `engine.py` (one pass for every rule), `reading.py` (newline-aligned blocks),
  `cleaning.py` (escapes and section markers out), `prefilter.py` and `literals.py`
  (Hyperscan / re2.Set, which patterns hit a block), `evidence.py` (matched lines as text),
  `result.py` (returned objects);
* the layers: `classifier.py`, `facts.py` (the log's end: failing command, exit code),
  `context.py` (inference from the command and job names), `errorlines.py` (the lines to read
  first), `signature.py` (what makes two failures the same);
* tools: `corpus.py` (the labelled logs), `suggest.py`, `backtest.py`, and `cli/` (commands).
"""

from __future__ import annotations

import importlib
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

# Where each public name is defined.
_FROM = {
    "CATEGORIES": ".model",
    "Classification": ".result",
    "Evidence": ".result",
    "Problem": ".problems",
    "Reaction": ".result",
    "Rule": ".model",
    "RuleTable": ".table",
    "RulesError": ".problems",
    "check_files": ".table",
    "load_table": ".table",
}


def __getattr__(name: str) -> Any:
    # Lazy: `devops-agent --help` imports tasks.ci.rules.cli, and must not pay for importing yaml,
    # re2 and hyperscan just to list commands.
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_FROM[name], __name__)
    return getattr(module, name)
