"""`devops-agent` command line: serve, worker, replay, classify, rules check, audit, config check.

Each command group lives in its own module with a `register(subparsers)` function; this file only
assembles them, so a command's imports (gunicorn, kubernetes, hyperscan) load only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module path -> registers its subcommands on the parser
COMMAND_MODULES = (
    "tasks.cli.serve",
    "tasks.cli.replay",
    "tasks.ci.rules.cli",
    "tasks.cli.audit",
    "tasks.cli.config",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devops-agent",
        description="GitLab webhook automation: CI failure triage, retries and ChatOps deploys.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
