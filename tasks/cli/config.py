"""`devops-agent config check [--config FILE]`: the configuration start-up would use, or why
start-up would refuse it.

It reads the environment, the YAML file (DEVOPS_AGENT_CONFIG, or --config) and the rules table
with the same functions `serve` and `worker` call before starting anything, and prints every
setting with its value and where it came from (default, environment, or a `_FILE`), secrets
masked. Exit 0, or 2 with every problem on standard error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from tasks.ci.rules import RulesError, load_table
from tasks.config.agent import load_config
from tasks.config.settings import ConfigError, describe_settings, load_settings

EXIT_OK = 0
EXIT_INVALID = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check the configuration and print what is in effect")
    cs = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    cs.required = True
    c = cs.add_parser("check", help="load settings, the YAML file and the rules table as start-up "
                                    "does; print the effective configuration (secrets masked)")
    c.add_argument("--config", type=Path, metavar="FILE",
                   help="the YAML file to check instead of DEVOPS_AGENT_CONFIG's")
    c.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    # The same loaders start-up calls (tasks/cli/serve.py); imported here so registering the
    # command costs nothing for the others.

    env = dict(os.environ)
    if args.config is not None:
        env["DEVOPS_AGENT_CONFIG"] = str(args.config)
    problems: list[str] = []
    settings = None
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        problems.append(str(exc))
    config_path = settings.config_file if settings is not None else \
        (Path(env["DEVOPS_AGENT_CONFIG"]) if env.get("DEVOPS_AGENT_CONFIG") else None)
    config = None
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        problems.append(str(exc))
    rules_count = None
    if settings is not None:
        try:
            rules_count = len(load_table(settings.rules_file).rules)
        except RulesError as exc:
            problems.append(str(exc))
    if problems:
        for p in problems:
            print(f"devops-agent: {p}", file=sys.stderr)
        return EXIT_INVALID
    assert settings is not None and config is not None
    out = sys.stdout
    rows = describe_settings(settings)
    width = max(len(name) for name, _, _ in rows)
    vwidth = min(48, max(len(value) for _, value, _ in rows))
    out.write("Settings (environment variables):\n")
    for name, value, origin in rows:
        out.write(f"  {name:<{width}}  {value:<{vwidth}}  {origin}\n")
    out.write(f"\nRules table: {rules_count} rules"
              f" ({'default + ' + str(settings.rules_file) if settings.rules_file else 'default'})\n")
    out.write(f"\nYAML configuration: {config_path if config_path else 'none (the defaults)'}\n")

    dumped = config.model_dump(mode="json")
    text = yaml.safe_dump(_effective(dumped), sort_keys=False, default_flow_style=False, width=100)
    out.write("".join(f"  {line}\n" for line in text.splitlines()))
    return EXIT_OK


def _effective(dumped: dict[str, Any]) -> dict[str, Any]:
    """The YAML model as the new layout reads it: each environment's access under it."""
    access = dumped.pop("access", {}) or {}
    envs = dumped.pop("environments", {}) or {}
    merged: dict[str, Any] = {}
    for name in [*access, *(n for n in envs if n not in access)]:
        entry: dict[str, Any] = {}
        if name in access:
            entry["access"] = access[name]
        if name in envs:
            entry.update({k: v for k, v in envs[name].items() if k != "name"})
        merged[name] = entry
    return {**dumped, "environments": merged}
