"""`devops-agent rules suggest`: propose rules for failures no rule knew or people corrected.

The examples come from the service's store (failures classified `unknown`, and those people
corrected), or with --logs from log files: a folder of logs (those no rule decides), or a
corpus manifest (its misclassified logs, with the manifest's category as the correction). The
clustering and the proposals are suggest.py's; this prints them as YAML to review, or JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import redis

from tasks.config.settings import ConfigError, load_settings

from ..classifier import Classifier
from ..corpus import load_manifest
from ..suggest import render_yaml, suggest
from ..table import CATEGORIES, RulesError, RuleTable, load_table
from .common import EXIT_BAD_RULES, EXIT_USAGE, err, user_rules, write_json
from .store import corrections_at


def run(args: argparse.Namespace) -> int:
    if args.min_examples < 1:
        err("--min-examples must be at least 1")
        return EXIT_USAGE
    if args.logs is not None:
        try:
            table = load_table(user_rules(args.rules))
        except RulesError as exc:
            err(str(exc))
            return EXIT_BAD_RULES
        if not args.logs.exists():
            err(f"no such path: {args.logs}")
            return EXIT_USAGE
        try:
            examples = examples_from_logs(args.logs, table)
        except (OSError, ValueError) as exc:
            err(str(exc))
            return EXIT_USAGE
    else:
        try:
            url = load_settings(require_secret=False).redis_url
        except ConfigError as exc:
            err(str(exc))
            return EXIT_USAGE
        if not url:
            err("REDIS_URL is not set: point it at the service's Redis, or use --logs PATH")
            return EXIT_USAGE
        try:
            store = corrections_at(url)
            examples = list(store.examples("corrected", args.limit))
            seen = {(e.get("project"), e.get("job")) for e in examples}
            examples += [e for e in store.examples("unknown", args.limit)
                         if (e.get("project"), e.get("job")) not in seen]
        except redis.RedisError as exc:
            err(f"cannot read the store at REDIS_URL: {type(exc).__name__}")
            return EXIT_USAGE
    proposals = suggest(examples, min_examples=args.min_examples)
    if args.format == "json":
        write_json({"examples": len(examples), "proposals": [p.to_dict() for p in proposals]})
    else:
        sys.stdout.write(render_yaml(proposals))
        print(f"{len(proposals)} rule(s) proposed from {len(examples)} example(s)",
              file=sys.stderr)
    return 0


def examples_from_logs(path: Path, table: RuleTable) -> list[dict[str, Any]]:
    """Examples, in the store's shape, of the logs at `path` that the table gets wrong.

    A folder without a manifest: every `*.log` below it that is classified `unknown`. A
    manifest (or a folder of them): its failed jobs' logs classified `unknown` or as another
    category than the manifest's, which then counts as the correction."""
    classifier = Classifier(table)
    targets: list[tuple[Path, str | None]]
    if path.is_dir() and not any(path.rglob("manifest.yaml")):
        targets = [(p, None) for p in sorted(path.rglob("*.log"))]
    else:
        targets = [(e.path, e.category) for e in load_manifest(path, CATEGORIES)
                   if e.outcome == "failed"]
    out = []
    for log, expected in targets:
        with open(log, "rb") as fh:
            v = classifier.classify(fh)
        if v.category != "unknown" and (expected is None or v.category == expected):
            continue
        example = {"job": log.name, "project_path": str(log.parent), "classified_as": v.category,
                   "lines": [e.text for e in v.evidence] + [ln.text for ln in v.error_lines]}
        if expected is not None and expected != v.category:
            example["category"] = expected
        out.append(example)
    return out
