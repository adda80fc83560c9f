"""The backtest (behind `devops-agent rules backtest`, cli/backtest.py): run a rules table over a
project's recent failed AND passed jobs and report, per rule, what it would have said.

OpenStack's elastic-recheck judged a signature by how often it hit successful jobs (well under
10% or it is noise); we report that for every rule, with its hits on failed jobs, its agreement
with what people corrected, and every verdict that changes against the current table. Logs are
read through the API once (streamed, tail-capped) and kept on disk gzip-compressed: a finished
job's log never changes, so a second backtest over the same weeks reads no log twice.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SCOPES = ("failed", "success")
NOISE_RATE = 0.10  # elastic-recheck: a signature hitting this share of passing jobs is noise
_SINCE = re.compile(r"^(\d{1,4})([hdw])$")


class JobSource(Protocol):
    """The two GitLab calls a backtest makes (tasks/gitlab/client.py implements them)."""

    def recent_jobs(self, project: Any, scopes: Iterable[str],
                    limit: int = ...) -> Iterator[dict[str, Any]]: ...

    def job_log(self, project: Any, job_id: int) -> Any: ...


def parse_since(raw: str, now: dt.datetime | None = None) -> dt.datetime:
    """`14d`, `36h`, `2w`, or an ISO date/time (UTC when no zone is given)."""
    now = now or dt.datetime.now(dt.UTC)
    m = _SINCE.match(raw.strip().lower())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return now - dt.timedelta(hours=n * {"h": 1, "d": 24, "w": 24 * 7}[unit])
    try:
        when = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since: expected 14d, 36h, 2w or an ISO date, not {raw[:40]!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class StoredJob:
    project: str
    id: int
    name: str
    stage: str
    status: str  # failed | success
    failure_reason: str | None
    created_at: str
    path: Path


class LogCache:
    """Finished jobs' logs on disk, gzip level 1 (fast; logs compress about 10x)."""

    def __init__(self, root: Path, host: str) -> None:
        self.root = root / re.sub(r"[^A-Za-z0-9.-]+", "_", host)

    def path(self, project: Any, job_id: int) -> Path:
        return self.root / re.sub(r"[^A-Za-z0-9._-]+", "_", str(project)) / f"{int(job_id)}.log.gz"

    def has(self, project: Any, job_id: int) -> bool:
        return self.path(project, job_id).is_file()

    def put(self, project: Any, job_id: int, data: bytes) -> Path:
        path = self.path(project, job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with gzip.open(tmp, "wb", compresslevel=1) as fh:
            fh.write(data)
        tmp.replace(path)  # a reader never sees half a log
        return path


def collect(source: JobSource, projects: list[str], since: dt.datetime, cache: LogCache, *,
            max_jobs: int = 1000, workers: int = 4) -> list[StoredJob]:
    """The projects' failed and passed jobs created since `since` (at most `max_jobs` each,
    newest first), with their logs in the cache (fetched only when missing)."""
    jobs: list[StoredJob] = []
    for project in projects:
        for job in source.recent_jobs(project, SCOPES, limit=max_jobs):
            created = job.get("created_at") or ""
            try:
                when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                continue
            if when < since:
                break  # newest first: everything after this is older still
            if job.get("status") not in SCOPES:
                continue
            jobs.append(StoredJob(project=str(project), id=int(job["id"]),
                                  name=str(job.get("name") or ""),
                                  stage=str(job.get("stage") or ""),
                                  status=job["status"], failure_reason=job.get("failure_reason"),
                                  created_at=created, path=cache.path(project, int(job["id"]))))
    missing = [j for j in jobs if not j.path.is_file()]

    def fetch(j: StoredJob) -> None:
        log = source.job_log(j.project, j.id)
        cache.put(j.project, j.id, log.data)

    if missing:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(fetch, missing))
    return jobs


@dataclass
class RuleStats:
    failed_wins: int = 0  # failed jobs this rule decided
    failed_hits: int = 0  # failed jobs it matched at all
    passed_hits: int = 0  # passing jobs it matched: false alarms
    agree: int = 0  # corrected jobs where its verdict equals the person's category
    disagree: int = 0


@dataclass
class Change:
    job: StoredJob
    before: tuple[str, str | None]  # (category, rule)
    after: tuple[str, str | None]


@dataclass
class Report:
    rules: dict[str, RuleStats] = field(default_factory=lambda: defaultdict(RuleStats))
    failed_jobs: int = 0
    passed_jobs: int = 0
    unknown: int = 0
    logs_bytes: int = 0
    seconds: float = 0.0
    changes: list[Change] = field(default_factory=list)

    @property
    def logs_per_second(self) -> float:
        total = self.failed_jobs + self.passed_jobs
        return total / self.seconds if self.seconds else 0.0

    def noisy(self) -> list[str]:
        """Rules hitting at least NOISE_RATE of the passing jobs."""
        if not self.passed_jobs:
            return []
        return sorted(r for r, s in self.rules.items()
                      if s.passed_hits / self.passed_jobs >= NOISE_RATE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failed_jobs": self.failed_jobs, "passed_jobs": self.passed_jobs,
            "unknown": self.unknown, "seconds": round(self.seconds, 3),
            "logs_per_second": round(self.logs_per_second, 1), "bytes": self.logs_bytes,
            "rules": {r: vars(s) for r, s in sorted(self.rules.items())},
            "noisy": self.noisy(),
            "changes": [{"project": c.job.project, "job": c.job.id, "name": c.job.name,
                         "before": list(c.before), "after": list(c.after)} for c in self.changes],
        }


def _read(job: StoredJob) -> bytes:
    with gzip.open(job.path, "rb") as fh:
        return fh.read()


def run(jobs: list[StoredJob], candidate: Any, current: Any | None = None,
        corrections: dict[tuple[str, int], str] | None = None) -> Report:
    """Classify every stored job with `candidate` (and `current`, to list what changes).

    `corrections` maps (project, job id) to the category a person gave that job."""
    report = Report()
    corrections = corrections or {}
    started = time.perf_counter()
    for job in jobs:
        data = _read(job)
        report.logs_bytes += len(data)
        failed = job.status == "failed"
        fields = dict(failure_reason=job.failure_reason if failed else None, job_name=job.name,
                      stage=job.stage)
        v = candidate.classify([data], **fields)
        hits = ([v.rule_id] if v.rule_id else []) + list(v.also_matched)
        if failed:
            report.failed_jobs += 1
            report.unknown += v.category == "unknown"
            if v.rule_id:
                report.rules[v.rule_id].failed_wins += 1
            for rule in hits:
                report.rules[rule].failed_hits += 1
            taught = corrections.get((job.project, job.id))
            if taught is not None and v.rule_id:
                stats = report.rules[v.rule_id]
                if v.category == taught:
                    stats.agree += 1
                else:
                    stats.disagree += 1
            if current is not None:
                before = current.classify([data], **fields)
                if (before.category, before.rule_id) != (v.category, v.rule_id):
                    report.changes.append(Change(job, (before.category, before.rule_id),
                                                 (v.category, v.rule_id)))
        else:
            report.passed_jobs += 1
            for rule in hits:
                report.rules[rule].passed_hits += 1
    report.seconds = time.perf_counter() - started
    return report


def render(report: Report, limit: int = 30) -> str:
    lines = [f"{report.failed_jobs} failed and {report.passed_jobs} passed jobs classified in "
             f"{report.seconds:.2f}s ({report.logs_per_second:,.0f} logs/s, "
             f"{report.logs_bytes / 1e6:,.1f} MB); {report.unknown} failed jobs unknown", "",
             "| rule | decided | matched failed | matched passed | corrections agree/disagree |",
             "|---|---:|---:|---:|---:|"]
    noisy = set(report.noisy())
    order = sorted(report.rules.items(), key=lambda kv: (-kv[1].failed_wins, kv[0]))
    for rule, s in order:
        rate = (f" ({s.passed_hits / report.passed_jobs:.0%})"
                if report.passed_jobs and s.passed_hits else "")
        flag = " ⚠ noisy" if rule in noisy else ""
        lines.append(f"| {rule}{flag} | {s.failed_wins} | {s.failed_hits} | "
                     f"{s.passed_hits}{rate} | {s.agree}/{s.disagree} |")
    if noisy:
        lines += ["", f"⚠ {len(noisy)} rule(s) match at least {NOISE_RATE:.0%} of passing jobs: "
                      "their patterns are noise there; tighten them or add an exclude."]
    if report.changes:
        lines += ["", f"{len(report.changes)} verdict(s) change against the current table:"]
        for c in report.changes[:limit]:
            lines.append(f"  {c.job.project} job {c.job.id} ({c.job.name}): "
                         f"{c.before[0]} ({c.before[1] or 'no rule'}) -> "
                         f"{c.after[0]} ({c.after[1] or 'no rule'})")
        if len(report.changes) > limit:
            lines.append(f"  ... and {len(report.changes) - limit} more")
    return "\n".join(lines) + "\n"
