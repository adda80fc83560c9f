"""`devops-agent rules backtest [RULES_FILE]`: a rules table over a project's recent jobs.

Reads the projects' recent failed and passed jobs through the GitLab API (dry-run adapter:
nothing is written to GitLab), keeps their logs in a disk cache, and prints backtest.py's
report: per rule, jobs decided, failed and passed jobs matched, agreement with people's
corrections (from REDIS_URL, when set), and the verdicts a candidate table changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

import redis

from tasks.config.settings import ConfigError, load_settings
from tasks.gitlab.client import GitLabAdapter, GitLabError

from .. import backtest
from ..classifier import Classifier
from ..table import RulesError, load_table
from .common import EXIT_BAD_RULES, EXIT_USAGE, err, user_rules, write_json
from .store import corrections_at


def run(args: argparse.Namespace) -> int:
    try:
        since = backtest.parse_since(args.since)
        settings = load_settings(require_secret=False)
    except (ValueError, ConfigError) as exc:
        err(str(exc))
        return EXIT_USAGE
    if not settings.gitlab_url or settings.gitlab_token is None:
        err("set GITLAB_URL and GITLAB_TOKEN (or GITLAB_TOKEN_FILE) to read jobs from GitLab")
        return EXIT_USAGE
    if args.max_jobs < 1:
        err("--max-jobs must be at least 1")
        return EXIT_USAGE
    try:
        current = load_table(user_rules(None))
        candidate = load_table(args.file) if args.file else current
    except RulesError as exc:
        err(str(exc))
        return EXIT_BAD_RULES
    cache_root = args.cache_dir or Path(settings.cache_dir
                                        or Path.home() / ".cache" / "devops-agent") / "backtest"
    cache = backtest.LogCache(cache_root, urlsplit(settings.gitlab_url).netloc)
    gitlab = GitLabAdapter(settings.gitlab_url, settings.gitlab_token.value, dry_run=True,
                           max_log_bytes=settings.max_log_bytes)
    try:
        jobs = backtest.collect(gitlab, args.project, since, cache, max_jobs=args.max_jobs)
    except GitLabError as exc:
        err(f"cannot read jobs: {exc}")
        return EXIT_USAGE
    finally:
        gitlab.close()
    report = backtest.run(jobs, Classifier(candidate),
                          Classifier(current) if args.file else None,
                          _corrections_by_job(settings.redis_url))
    if args.format == "json":
        write_json(report.to_dict())
    else:
        sys.stdout.write(backtest.render(report))
    return 1 if report.noisy() else 0


def _corrections_by_job(url: str | None) -> dict[tuple[str, int], str]:
    """(project id or path, job id) -> the category a person gave that job; {} without a store."""
    if not url:
        return {}
    try:
        out: dict[tuple[str, int], str] = {}
        for ex in corrections_at(url).examples("corrected"):
            for project in (ex.get("project"), ex.get("project_path")):
                if project is not None and ex.get("job") is not None:
                    out[(str(project), int(ex["job"]))] = ex["category"]
        return out
    except (redis.RedisError, ValueError, KeyError):
        err("warning: could not read corrections from REDIS_URL; comparing without them")
        return {}
