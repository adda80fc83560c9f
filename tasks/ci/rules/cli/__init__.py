"""The rules commands: `devops-agent classify` and `devops-agent rules SUBCOMMAND`.

This module only declares the commands (their arguments, help and exit codes): tasks/cli/main.py
imports every command group to build --help, and a rules table is only worth compiling when a
command actually runs. Each command's code is in its own module here (classify.py, check.py,
evaluate.py, suggest.py, backtest.py), imported when that command is run.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLASSIFY_EPILOG = """\
exit codes:
  0  a category was found (by GitLab's fields, a rule, or the context of the failure)
  1  nothing told: category "unknown"
  2  usage error, or LOG missing / unreadable
  3  the rules table is invalid (every problem is printed)

LOG may be "-" for standard input. Without --rules the RULES_FILE environment variable is
used, if set, on top of the shipped default table.
"""

CHECK_EPILOG = """\
exit codes:
  0  the table is valid
  1  problems were found (each printed as file:line: rule ID: field: message)
  2  usage error

Without FILE, checks the default table plus RULES_FILE if that variable is set.
"""

EVALUATE_EPILOG = """\
exit codes:
  0  evaluated (and, with --min-accuracy, the thresholds were met)
  1  below --min-accuracy, or a rule fired on a passing job's log
  2  usage error, or the manifest is malformed
  3  the rules table is invalid
"""

SUGGEST_EPILOG = """\
Without --logs, the examples come from the running service's store (REDIS_URL): failures
classified `unknown`, and failures people corrected with `/devops classify` or by swapping the
ci-failure: label. exit codes: 0 proposals printed (possibly none), 2 usage or store error,
3 the rules table is invalid.
"""

BACKTEST_EPILOG = """\
GITLAB_URL and GITLAB_TOKEN (or GITLAB_TOKEN_FILE) say which GitLab to read; the token needs
read_api. The current table is the default plus RULES_FILE from the environment; RULES_FILE
given here is the candidate compared with it. With REDIS_URL set, people's corrections kept by
the service are compared too. exit codes: 0 done, 1 a rule matches 10% or more of the passing
jobs, 2 usage or GitLab error, 3 a rules table is invalid.
"""

_RAW = argparse.RawDescriptionHelpFormatter
_USER_RULES_HELP = "user rules file (extends/overrides the default)"


def _runs(module: str) -> Callable[[argparse.Namespace], int]:
    """`args.func` for a command: imports the command's module only when the command runs."""

    def run(args: argparse.Namespace) -> int:
        command = importlib.import_module(f"{__name__}.{module}")
        return int(command.run(args))

    return run


def register(subparsers: Any) -> None:
    """Add `classify` and `rules check|evaluate|suggest|backtest` to the top-level subparsers."""
    _add_classify(subparsers)
    r = subparsers.add_parser("rules", help="work with rules tables",
                              description="Work with rules tables.")
    rsub = r.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    rsub.required = True
    _add_check(rsub)
    _add_evaluate(rsub)
    _add_suggest(rsub)
    _add_backtest(rsub)


def _add_classify(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "classify",
        help="classify a failed CI job's log with the rules table",
        description="Classify a failed CI job from its log and GitLab job fields.",
        epilog=CLASSIFY_EPILOG,
        formatter_class=_RAW,
    )
    p.add_argument("log", metavar="LOG", help='path to the job log, or "-" for stdin')
    p.add_argument("--failure-reason", metavar="R",
                   help="GitLab build_failure_reason (e.g. script_failure)")
    p.add_argument("--job-name", metavar="N", help="job name (build_name)")
    p.add_argument("--stage", metavar="S", help="job stage (build_stage)")
    p.add_argument("--exit-code", metavar="C", type=int, help="the job script's exit code")
    p.add_argument("--rules", metavar="FILE", type=Path, help=_USER_RULES_HELP)
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="output format (default: text)")
    p.set_defaults(func=_runs("classify"))


def _add_check(rsub: Any) -> None:
    c = rsub.add_parser(
        "check",
        help="validate a rules file and report every problem",
        description="Validate a rules file (merged with the default table) and report every "
                    "problem.",
        epilog=CHECK_EPILOG,
        formatter_class=_RAW,
    )
    c.add_argument("file", metavar="FILE", nargs="?", type=Path, help="rules file to check")
    c.set_defaults(func=_runs("check"))


def _add_evaluate(rsub: Any) -> None:
    e = rsub.add_parser(
        "evaluate",
        help="score the table on a labelled corpus of logs",
        description="Classify every log of a corpus manifest and report accuracy per category "
                    "and false alarms on passing jobs.",
        epilog=EVALUATE_EPILOG,
        formatter_class=_RAW,
    )
    e.add_argument("manifest", metavar="MANIFEST", type=Path,
                   help="a manifest.yaml, or a folder searched for manifest.yaml files")
    e.add_argument("--rules", metavar="FILE", type=Path, help=_USER_RULES_HELP)
    e.add_argument("--min-accuracy", metavar="F", type=float, default=None,
                   help="exit 1 when accuracy on failed jobs is below F (0..1) or any passing "
                        "log is hit")
    e.add_argument("--format", choices=("text", "json"), default="text")
    e.set_defaults(func=_runs("evaluate"))


def _add_suggest(rsub: Any) -> None:
    g = rsub.add_parser(
        "suggest",
        help="propose rules for failures no rule knew or people corrected",
        description="Cluster unknown and corrected failures by their normalised error lines and "
                    "propose one rule per cluster (YAML to review and add to RULES_FILE).",
        epilog=SUGGEST_EPILOG,
        formatter_class=_RAW,
    )
    g.add_argument("--logs", metavar="PATH", type=Path,
                   help="take examples from log files instead of the service's store: a folder "
                        "of *.log files, or a corpus manifest (its misclassified logs count as "
                        "corrected)")
    g.add_argument("--rules", metavar="FILE", type=Path, help="user rules file, for --logs")
    g.add_argument("--min-examples", metavar="N", type=int, default=2,
                   help="smallest cluster to propose a rule for (default 2)")
    g.add_argument("--limit", metavar="N", type=int, default=5000,
                   help="examples to read from the store (newest first; default 5000)")
    g.add_argument("--format", choices=("yaml", "json"), default="yaml")
    g.set_defaults(func=_runs("suggest"))


def _add_backtest(rsub: Any) -> None:
    b = rsub.add_parser(
        "backtest",
        help="run a rules table over a project's recent failed and passed jobs",
        description="Read recent failed and passed jobs through the GitLab API (streamed, "
                    "bounded, cached on disk) and report per rule: jobs it decided, failed and "
                    "passed jobs it matched, agreement with people's corrections, and every "
                    "verdict that changes against the current table.",
        epilog=BACKTEST_EPILOG,
        formatter_class=_RAW,
    )
    b.add_argument("file", metavar="RULES_FILE", nargs="?", type=Path,
                   help="the candidate rules file (default: the current table)")
    b.add_argument("--project", metavar="P", action="append", required=True,
                   help="project id or full path (repeatable)")
    b.add_argument("--since", metavar="WHEN", default="14d",
                   help="14d, 36h, 2w or an ISO date (default 14d)")
    b.add_argument("--max-jobs", metavar="N", type=int, default=1000,
                   help="newest jobs to read per project (default 1000)")
    b.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                   help="where logs are kept (default: $DEVOPS_AGENT_CACHE_DIR/backtest)")
    b.add_argument("--format", choices=("text", "json"), default="text")
    b.set_defaults(func=_runs("backtest"))
