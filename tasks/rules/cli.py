"""`devops-agent classify` and `devops-agent rules check`.

Kept free of heavy imports at module level: tasks/cli.py imports every command group to build
--help, and compiling a rules table is only worth it when a command actually runs.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

EXIT_MATCHED = 0
EXIT_UNKNOWN = 1
EXIT_USAGE = 2
EXIT_BAD_RULES = 3

_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\n\r\x1b\x08\x0c" + bytes(range(0x80, 0x100))

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


def register(subparsers: Any) -> None:
    """Add `classify` and `rules check` to the top-level subparsers."""
    p = subparsers.add_parser(
        "classify",
        help="classify a failed CI job's log with the rules table",
        description="Classify a failed CI job from its log and GitLab job fields.",
        epilog=CLASSIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", metavar="LOG", help='path to the job log, or "-" for stdin')
    p.add_argument("--failure-reason", metavar="R", help="GitLab build_failure_reason (e.g. script_failure)")
    p.add_argument("--job-name", metavar="N", help="job name (build_name)")
    p.add_argument("--stage", metavar="S", help="job stage (build_stage)")
    p.add_argument("--exit-code", metavar="C", type=int, help="the job script's exit code")
    p.add_argument("--rules", metavar="FILE", type=Path, help="user rules file (extends/overrides the default)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.set_defaults(func=cmd_classify)

    r = subparsers.add_parser("rules", help="work with rules tables", description="Work with rules tables.")
    rsub = r.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    rsub.required = True
    c = rsub.add_parser(
        "check",
        help="validate a rules file and report every problem",
        description="Validate a rules file (merged with the default table) and report every problem.",
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("file", metavar="FILE", nargs="?", type=Path, help="rules file to check")
    c.set_defaults(func=cmd_rules_check)
    e = rsub.add_parser(
        "evaluate",
        help="score the table on a labelled corpus of logs",
        description="Classify every log of a corpus manifest and report accuracy per category "
                    "and false alarms on passing jobs.",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("manifest", metavar="MANIFEST", type=Path,
                   help="a manifest.yaml, or a folder searched for manifest.yaml files")
    e.add_argument("--rules", metavar="FILE", type=Path, help="user rules file (extends/overrides the default)")
    e.add_argument("--min-accuracy", metavar="F", type=float, default=None,
                   help="exit 1 when accuracy on failed jobs is below F (0..1) or any passing log is hit")
    e.add_argument("--format", choices=("text", "json"), default="text")
    e.set_defaults(func=cmd_rules_evaluate)


EVALUATE_EPILOG = """\
exit codes:
  0  evaluated (and, with --min-accuracy, the thresholds were met)
  1  below --min-accuracy, or a rule fired on a passing job's log
  2  usage error, or the manifest is malformed
  3  the rules table is invalid
"""


def _user_rules(arg: Path | None) -> Path | None:
    if arg is not None:
        return arg
    env = os.environ.get("RULES_FILE", "").strip()
    return Path(env) if env else None


def _err(msg: str) -> None:
    print(f"devops-agent: {msg}", file=sys.stderr)


def _open_log(spec: str) -> BinaryIO:
    if spec == "-":
        return sys.stdin.buffer
    path = Path(spec)
    if path.is_dir():
        raise OSError(f"{spec}: is a directory")
    return open(path, "rb", buffering=0)


def _chunks(fh: BinaryIO, state: dict[str, Any]) -> Iterable[bytes]:
    """File chunks, noting whether the input looks like binary rather than a text log.

    A regular file is sniffed with one pread and handed to the engine as it is (read_chunks),
    so the engine can read it in newline-aligned blocks; a pipe is sniffed on its first chunk.
    """
    from .engine import read_chunks

    try:
        regular = stat.S_ISREG(os.fstat(fh.fileno()).st_mode) and fh.seekable()
    except (AttributeError, OSError, ValueError):
        regular = False
    if regular:
        sample = os.pread(fh.fileno(), 8192, fh.tell())
        if sample:
            state["binary"] = _looks_binary(sample)
        return read_chunks(fh)
    return _sniffed(read_chunks(fh), state)


def _looks_binary(sample: bytes) -> bool:
    # Text logs (UTF-8, ANSI colours, \r progress bars) have almost no other control bytes.
    return len(sample.translate(None, _TEXT_BYTES)) * 20 > len(sample)


def _sniffed(chunks: Iterable[bytes], state: dict[str, Any]) -> Iterator[bytes]:
    for data in chunks:
        if "binary" not in state:
            state["binary"] = _looks_binary(data[:8192])
        yield data


def cmd_classify(args: argparse.Namespace) -> int:
    from .classifier import Classifier
    from .table import RulesError, load_table

    try:
        table = load_table(_user_rules(args.rules))
    except RulesError as exc:
        _err(str(exc))
        return EXIT_BAD_RULES
    try:
        fh = _open_log(args.log)
    except OSError as exc:
        _err(f"cannot read LOG: {exc.strerror or exc}" + (f": {args.log}" if exc.strerror else ""))
        return EXIT_USAGE
    state: dict[str, Any] = {}
    try:
        with fh if fh is not sys.stdin.buffer else _nullcontext():
            result = Classifier(table).classify(
                _chunks(fh, state),
                failure_reason=args.failure_reason,
                job_name=args.job_name,
                stage=args.stage,
                exit_code=args.exit_code,
            )
    except OSError as exc:
        _err(f"cannot read LOG: {exc.strerror or exc}")
        return EXIT_USAGE
    if state.get("binary"):
        _err("warning: LOG looks like binary data, not a text log; classified it anyway")
    if args.format == "json":
        import orjson

        sys.stdout.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_text(result, empty=not state))
    return EXIT_MATCHED if result.category != "unknown" else EXIT_UNKNOWN


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def render_text(result: Any, empty: bool = False) -> str:
    """The verdict first, then why, the lines that justify it, where to read, and what to do."""
    how = f"rule {result.rule_id}" if result.layer == "rules" else \
        f"{result.layer} layer, {result.confidence} confidence"
    out = [f"{result.category}  ({how})", f"  {result.description}", f"  why: {result.reason}"]
    if empty and result.category == "unknown":
        out.append("  (the log is empty)")
    r = result.reaction
    if result.rule_id:
        reaction = r.kind + (f" (at most {r.max_retries}x)" if r.kind == "retry" else "")
        if r.labels:
            reaction += "; labels: " + ", ".join(r.labels)
        out.append(f"  suggested reaction: {reaction}")
    if result.exit_code is not None:
        out.append(f"  exit code: {result.exit_code}")
    if result.failing_command is not None:
        out.append(f"  failing command (line {result.failing_command.number}): "
                   f"$ {result.failing_command.text}")
    if result.evidence:
        shown = len(result.evidence)
        total = max(result.matched_lines, shown)
        out.append("")
        out.append(f"evidence ({shown} of {total}{'+' if total >= 1000 else ''} matching lines):")
        width = len(str(result.evidence[-1].line))
        for ev in result.evidence:
            section = f" [{ev.section}]" if ev.section else ""
            out.append(f"  {ev.line:>{width}}{section}  {ev.text}")
    shown_lines = {ev.line for ev in result.evidence}
    extra = [ln for ln in result.error_lines if ln.number not in shown_lines]
    if extra:
        out.append("")
        out.append("most likely failing lines:")
        width = len(str(extra[-1].number))
        out.extend(f"  {ln.number:>{width}}  {ln.text[:400]}" for ln in extra)
    if result.also_matched:
        out.append("")
        out.append("also matched: " + ", ".join(result.also_matched))
    if result.next_steps:
        out.append("")
        out.append("next steps:")
        out.extend(f"  {line}" if line else "" for line in result.next_steps.splitlines())
    return "\n".join(out) + "\n"


def cmd_rules_check(args: argparse.Namespace) -> int:
    from .table import check_files

    target = _user_rules(args.file)
    problems = check_files(target)
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", file=sys.stderr)
        return 1
    from .table import DEFAULT_RULES

    print(f"ok: {target or DEFAULT_RULES}")
    return 0


def cmd_rules_evaluate(args: argparse.Namespace) -> int:
    from .classifier import Classifier
    from .corpus import ManifestError, evaluate, layered_classifier, load_manifest
    from .table import CATEGORIES, RulesError, load_table

    try:
        table = load_table(_user_rules(args.rules))
    except RulesError as exc:
        _err(str(exc))
        return EXIT_BAD_RULES
    if not args.manifest.exists():
        _err(f"no such manifest: {args.manifest}")
        return EXIT_USAGE
    try:
        entries = load_manifest(args.manifest, CATEGORIES)
    except ManifestError as exc:
        _err(str(exc))
        return EXIT_USAGE
    report = evaluate(entries, layered_classifier(Classifier(table)))
    if args.format == "json":
        import orjson

        sys.stdout.write(orjson.dumps({
            "accuracy": report.accuracy, "per_category": report.per_category(),
            "false_positives": [r.entry.name for r in report.false_positives],
            "misses": [{"log": r.entry.name, "expected": r.entry.category, "got": r.category,
                        "rule": r.rule} for r in report.failed if not r.correct],
        }, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out = [report.table(), ""]
        for r in report.failed:
            if not r.correct:
                out.append(f"miss  {r.entry.name}: expected {r.entry.category}, got {r.category}"
                           + (f" (rule {r.rule})" if r.rule else f" ({r.detail.get('layer')})"))
            elif r.entry.rule and r.rule != r.entry.rule:
                out.append(f"note  {r.entry.name}: right category, but rule {r.rule} won over "
                           f"{r.entry.rule}")
        for r in report.false_positives:
            out.append(f"false alarm  {r.entry.name}: rule {r.rule or ', '.join(r.also_matched)} "
                       f"fired on a passing job ({'; '.join(r.detail.get('evidence', []))[:200]})")
        sys.stdout.write("\n".join(out) + "\n")
    if args.min_accuracy is not None and (report.accuracy < args.min_accuracy
                                          or report.false_positives):
        return 1
    return 0
