"""`devops-agent rules evaluate MANIFEST`: score the table on a labelled corpus of logs.

Every log of the manifest is classified by the whole layered classifier, as the service would
classify it; the report gives accuracy per category on failed jobs, and any rule firing on a
passing job's log as a false alarm. With --min-accuracy it is a gate for CI.
"""

from __future__ import annotations

import argparse
import sys

from ..classifier import Classifier
from ..corpus import ManifestError, Report, evaluate, layered_classifier, load_manifest
from ..table import CATEGORIES, RulesError, load_table
from .common import EXIT_BAD_RULES, EXIT_USAGE, err, user_rules, write_json


def run(args: argparse.Namespace) -> int:
    try:
        table = load_table(user_rules(args.rules))
    except RulesError as exc:
        err(str(exc))
        return EXIT_BAD_RULES
    if not args.manifest.exists():
        err(f"no such manifest: {args.manifest}")
        return EXIT_USAGE
    try:
        entries = load_manifest(args.manifest, CATEGORIES)
    except ManifestError as exc:
        err(str(exc))
        return EXIT_USAGE
    report = evaluate(entries, layered_classifier(Classifier(table)))
    if args.format == "json":
        write_json({
            "accuracy": report.accuracy, "per_category": report.per_category(),
            "false_positives": [r.entry.name for r in report.false_positives],
            "misses": [{"log": r.entry.name, "expected": r.entry.category, "got": r.category,
                        "rule": r.rule} for r in report.failed if not r.correct],
        })
    else:
        sys.stdout.write(render_text(report))
    if args.min_accuracy is not None and (report.accuracy < args.min_accuracy
                                          or report.false_positives):
        return 1
    return 0


def render_text(report: Report) -> str:
    """The per-category table, then each miss, each right category won by another rule, and
    each false alarm."""
    out = [report.table(), ""]
    for r in report.failed:
        if not r.correct:
            out.append(f"miss  {r.entry.name}: expected {r.entry.category}, got {r.category}"
                       + (f" (rule {r.rule})" if r.rule else f" ({r.detail.get('layer')})"))
        elif r.entry.rule and r.rule != r.entry.rule:
            out.append(f"note  {r.entry.name}: right category, but rule {r.rule} won over "
                       f"{r.entry.rule}")
    for r in report.false_positives:
        evidence = "; ".join(r.detail.get("evidence", []))[:200]
        out.append(f"false alarm  {r.entry.name}: rule {r.rule or ', '.join(r.also_matched)} "
                   f"fired on a passing job ({evidence})")
    return "\n".join(out) + "\n"
