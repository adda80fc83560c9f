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
    g = rsub.add_parser(
        "suggest",
        help="propose rules for failures no rule knew or people corrected",
        description="Cluster unknown and corrected failures by their normalised error lines and "
                    "propose one rule per cluster (YAML to review and add to RULES_FILE).",
        epilog=SUGGEST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument("--logs", metavar="PATH", type=Path,
                   help="take examples from log files instead of the service's store: a folder of "
                        "*.log files, or a corpus manifest (its misclassified logs count as corrected)")
    g.add_argument("--rules", metavar="FILE", type=Path, help="user rules file, for --logs")
    g.add_argument("--min-examples", metavar="N", type=int, default=2,
                   help="smallest cluster to propose a rule for (default 2)")
    g.add_argument("--limit", metavar="N", type=int, default=5000,
                   help="examples to read from the store (newest first; default 5000)")
    g.add_argument("--format", choices=("yaml", "json"), default="yaml")
    g.set_defaults(func=cmd_rules_suggest)
    b = rsub.add_parser(
        "backtest",
        help="run a rules table over a project's recent failed and passed jobs",
        description="Read recent failed and passed jobs through the GitLab API (streamed, "
                    "bounded, cached on disk) and report per rule: jobs it decided, failed and "
                    "passed jobs it matched, agreement with people's corrections, and every "
                    "verdict that changes against the current table.",
        epilog=BACKTEST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("file", metavar="RULES_FILE", nargs="?", type=Path,
                   help="the candidate rules file (default: the current table)")
    b.add_argument("--project", metavar="P", action="append", required=True,
                   help="project id or full path (repeatable)")
    b.add_argument("--since", metavar="WHEN", default="14d", help="14d, 36h, 2w or an ISO date (default 14d)")
    b.add_argument("--max-jobs", metavar="N", type=int, default=1000,
                   help="newest jobs to read per project (default 1000)")
    b.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                   help="where logs are kept (default: $DEVOPS_AGENT_CACHE_DIR/backtest)")
    b.add_argument("--format", choices=("text", "json"), default="text")
    b.set_defaults(func=cmd_rules_backtest)


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


def _examples_from_logs(path: Path, table: Any) -> list[dict[str, Any]]:
    from .classifier import Classifier
    from .corpus import load_manifest
    from .table import CATEGORIES

    classifier = Classifier(table)
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


def cmd_rules_suggest(args: argparse.Namespace) -> int:
    from .suggest import render_yaml, suggest
    from .table import RulesError, load_table

    if args.min_examples < 1:
        _err("--min-examples must be at least 1")
        return EXIT_USAGE
    if args.logs is not None:
        try:
            table = load_table(_user_rules(args.rules))
        except RulesError as exc:
            _err(str(exc))
            return EXIT_BAD_RULES
        if not args.logs.exists():
            _err(f"no such path: {args.logs}")
            return EXIT_USAGE
        try:
            examples = _examples_from_logs(args.logs, table)
        except (OSError, ValueError) as exc:
            _err(str(exc))
            return EXIT_USAGE
    else:
        url = os.environ.get("REDIS_URL", "").strip()
        if not url:
            _err("REDIS_URL is not set: point it at the service's Redis, or use --logs PATH")
            return EXIT_USAGE
        import redis

        from tasks.corrections import Corrections

        try:
            client = redis.Redis.from_url(url.replace("redis+socket://", "unix://"),
                                          socket_timeout=10, socket_connect_timeout=5)
            store = Corrections(client)
            examples = list(store.examples("corrected", args.limit))
            seen = {(e.get("project"), e.get("job")) for e in examples}
            examples += [e for e in store.examples("unknown", args.limit)
                         if (e.get("project"), e.get("job")) not in seen]
        except redis.RedisError as exc:
            _err(f"cannot read the store at REDIS_URL: {type(exc).__name__}")
            return EXIT_USAGE
    proposals = suggest(examples, min_examples=args.min_examples)
    if args.format == "json":
        import orjson

        sys.stdout.write(orjson.dumps({"examples": len(examples),
                                       "proposals": [p.to_dict() for p in proposals]},
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_yaml(proposals))
        print(f"{len(proposals)} rule(s) proposed from {len(examples)} example(s)", file=sys.stderr)
    return 0


def _corrections_by_job() -> dict[tuple[str, int], str]:
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        return {}
    import redis

    from tasks.corrections import Corrections

    try:
        client = redis.Redis.from_url(url.replace("redis+socket://", "unix://"),
                                      socket_timeout=10, socket_connect_timeout=5)
        out: dict[tuple[str, int], str] = {}
        for ex in Corrections(client).examples("corrected"):
            for project in (ex.get("project"), ex.get("project_path")):
                if project is not None and ex.get("job") is not None:
                    out[(str(project), int(ex["job"]))] = ex["category"]
        return out
    except (redis.RedisError, ValueError, KeyError):
        _err("warning: could not read corrections from REDIS_URL; comparing without them")
        return {}


def cmd_rules_backtest(args: argparse.Namespace) -> int:
    from tasks.adapters.gitlab import GitLabAdapter, GitLabError
    from tasks.settings import ConfigError, load_settings

    from . import backtest
    from .classifier import Classifier
    from .table import RulesError, load_table

    try:
        since = backtest.parse_since(args.since)
        settings = load_settings(require_secret=False)
    except (ValueError, ConfigError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    if not settings.gitlab_url or settings.gitlab_token is None:
        _err("set GITLAB_URL and GITLAB_TOKEN (or GITLAB_TOKEN_FILE) to read jobs from GitLab")
        return EXIT_USAGE
    if args.max_jobs < 1:
        _err("--max-jobs must be at least 1")
        return EXIT_USAGE
    try:
        current = load_table(_user_rules(None))
        candidate = load_table(args.file) if args.file else current
    except RulesError as exc:
        _err(str(exc))
        return EXIT_BAD_RULES
    cache_root = args.cache_dir or Path(os.environ.get("DEVOPS_AGENT_CACHE_DIR")
                                        or Path.home() / ".cache" / "devops-agent") / "backtest"
    from urllib.parse import urlsplit

    cache = backtest.LogCache(cache_root, urlsplit(settings.gitlab_url).netloc)
    gitlab = GitLabAdapter(settings.gitlab_url, settings.gitlab_token.value, dry_run=True,
                           max_log_bytes=settings.max_log_bytes)
    try:
        jobs = backtest.collect(gitlab, args.project, since, cache, max_jobs=args.max_jobs)
    except GitLabError as exc:
        _err(f"cannot read jobs: {exc}")
        return EXIT_USAGE
    finally:
        gitlab.close()
    report = backtest.run(jobs, Classifier(candidate),
                          Classifier(current) if args.file else None, _corrections_by_job())
    if args.format == "json":
        import orjson

        sys.stdout.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(backtest.render(report))
    return 1 if report.noisy() else 0
