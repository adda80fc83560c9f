"""Pipeline fixes as merge requests: when one job keeps failing for one infrastructure reason,
propose the `.gitlab-ci.yml` change that absorbs it (`retry:` on runner and platform failures, a
raised `timeout:` for a job that outgrew its limit), checked with GitLab's CI lint, with the
evidence in the description.

    detect.py   which failures count, per (project, job, reason), within the window
    merged.py   what the job does today (GitLab's merged configuration) and its new value
    edit.py     the change to one job's `retry:` / `timeout:`, every other byte kept
    mr.py       the follow-on job: one merge request per (project, job, kind), opened or updated
    wording.py  what the merge request says: title, description, evidence
    durations   GitLab's and the runner's duration formats

The triage of a failed pipeline calls `observe` for each failed job (cheap: one Redis script)
and asks for the `devops_agent.pipeline_fix` job when a threshold is reached; the failure
comment shows `comment_sentence` for each job, the merge request's link once it exists.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from tasks.ci.pipeline_fix.detect import NOT_EXPRESSIBLE, FixHistory, kind_of, normalise
from tasks.config.agent import AgentConfig
from tasks.gitlab.durations import parse_go_duration

JOB = "devops_agent.pipeline_fix"
# Never for these (tasks/ci/triage.py CODE_FAILURES): a retry would hide a real failure or a flake.
CODE_CATEGORIES = {"compile_error", "test_failure", "lint_failure", "security_scan_failure",
                   "dependency_resolution", "flaky_test"}


def fix_config(ctx: Any) -> Any:
    config = ctx.config if ctx.config is not None else AgentConfig()
    return config.pipeline_fixes


def _kind_for(row: dict[str, Any]) -> str | None:
    reason = normalise(row.get("failure_reason"))
    if reason in NOT_EXPRESSIBLE:
        return "script"
    return kind_of(reason)


def observe(ctx: Any, pipe: Any, job: Any, row: dict[str, Any], *, outage: bool) -> None:
    """Count this failed job; at the threshold ask for the merge request job (or, when no
    `.gitlab-ci.yml` change can absorb the reason, note why for the comment)."""
    cfg = fix_config(ctx)
    category = str(row.get("category") or "")
    # An outage (many jobs at once) is not one job's problem: no per-job change for it.
    if not cfg.enabled or outage or category in CODE_CATEGORIES \
            or category not in cfg.categories or row.get("confidence") != "high":
        return
    reason = normalise(job.failure_reason)
    kind = _kind_for(row)
    if kind is None or reason is None or (kind != "script" and kind not in cfg.kinds):
        return
    history = FixHistory(ctx.redis)
    limit = _enforced_limit(row)
    fresh, count = history.record(pipe.project, job.name, reason, job.id, {
        "pipeline": pipe.pipeline, "ref": pipe.ref, "sha": pipe.sha, "stage": job.stage,
        "category": category, "rule": row.get("rule"), "failure_reason": reason,
        **({"limit": limit} if limit else {})}, cfg.window_seconds)
    if not fresh or count < cfg.threshold:
        return
    days = f"{cfg.window_days} day{'s' if cfg.window_days != 1 else ''}"
    if kind == "script":
        history.set_status(pipe.project, job.name, kind, {
            "state": "skipped", "count": count, "reason":
            f"it failed {count} times in {days} with a {category.replace('_', ' ')}, but inside "
            "its script: GitLab's `retry:when` cannot tell that from a failing test (both are "
            "`script_failure`), so a `retry:` would retry real failures too"})
        return
    if ctx.settings.dry_run:
        history.set_status(pipe.project, job.name, kind, {"state": "dry_run", "count": count})
        ctx.decide("pipeline-fix", job=job.id, name=job.name, kind=kind, failures=count,
                   dry_run=True)
        return
    # One merge request per (project, job, kind) is mr.py's to keep; the engine runs the job
    # once per failure that reached the threshold (a resent webhook asks again for nothing).
    ctx.enqueue(JOB, {"project": pipe.project, "job_name": job.name, "kind": kind,
                      "pipe": asdict(pipe), "trigger_job": job.id},
                key=f"pipeline-fix:{pipe.project}:{job.name}:{kind}:{job.id}")
    known = history.status(pipe.project, job.name, kind)
    if known is None or known.get("state") not in ("opened", "updated"):
        history.set_status(pipe.project, job.name, kind,
                           {"state": "requested", "count": count, "reason": reason})
    ctx.decide("pipeline-fix", job=job.id, name=job.name, kind=kind, failures=count)


def _enforced_limit(row: dict[str, Any]) -> float | None:
    """The limit the runner says it enforced ("execution took longer than 1h0m0s seconds")."""
    for e in row.get("evidence") or []:
        m = re.search(r"execution took longer than (\S+)", str(e.get("text") or ""))
        if m:
            return parse_go_duration(m.group(1))
    return None


def comment_sentence(redis: Any, project: int, row: dict[str, Any]) -> str | None:
    """What was done about this job's repeated failures, for the failure comment."""
    if row.get("category") in CODE_CATEGORIES:
        return None
    kind = _kind_for(row)
    if kind is None:
        return None
    status = FixHistory(redis).status(project, row["name"], kind)
    if not status:
        return None
    change = {"retry": "`retry:`", "timeout": "`timeout:`", "script": "`retry:`"}[kind]
    sentence = _sentence(status, change)
    # Job names, paths and lint errors come from the repository: they must not close our
    # hidden marker or open one of their own.
    return sentence.replace("<!--", "&lt;!--").replace("-->", "--&gt;") if sentence else None


def _sentence(status: dict[str, Any], change: str) -> str | None:
    state = status.get("state")
    if state == "requested":
        return (f"It failed {status.get('count')} times for `{status.get('reason')}` "
                f"recently: a merge request changing {change} in the CI configuration was asked "
                "for; this comment links it once GitLab has created it")
    if state == "dry_run":
        return f"It failed {status.get('count')} times recently: would propose a merge " \
               f"request changing {change} (dry run)"
    if state in ("opened", "updated"):
        verb = "proposes" if state == "opened" else "proposes (updated with the latest failures)"
        return f"Merge request [!{status.get('mr')}]({status.get('url')}) {verb} " \
               f"{status.get('what')}"
    if state == "skipped":
        return f"No merge request changing {change}: {status.get('reason')}"
    return None
