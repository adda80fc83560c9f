"""Failed CI jobs: classify each, decide (retry / hand off a fix / report), then have the failure
comment say so (tasks/ci/report.py).

Plain functions over narrow interfaces (the GitLab adapter, the rules table, the store), called
by the pipeline and job handlers. Every write is guarded so that hearing of the same failure
again (a resent webhook, a Job Hook and a Pipeline Hook for one job, a retried task) changes
nothing: a job id is retried at most once, a fix is handed off once per pipeline and job, and the
comment is edited in place and skipped when unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.ci.corrections import Corrections
from tasks.ci.history import FailureHistory
from tasks.ci.pipeline import FailedJob, PipelineRef
from tasks.ci.pipeline_fix import observe
from tasks.ci.report import explain
from tasks.ci.rules.classifier import Classifier
from tasks.deploy.gates import LEVEL_NAMES
from tasks.gitlab.client import Forbidden, GitLabError, GitLabUnavailable
from tasks.gitlab.comments import marker
from tasks.gitlab.facts import check_project, project_allowed
from tasks.platform import metrics
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.triage")

# Prow refused blind retries of test failures because they hide flakes; PyTorch never retries
# build, test or lint steps. A rule may ask for a retry; these categories never get one.
NEVER_RETRY = {"compile_error", "test_failure", "lint_failure", "security_scan_failure"}
CODE_FAILURES = NEVER_RETRY | {"dependency_resolution"}
# A pipeline's failed jobs read per event: each costs a log read; a pipeline with more failed
# jobs than this is an outage (OUTAGE_JOB_THRESHOLD is far lower) and is reported, not read.
MAX_FAILED_JOBS = 50


def not_actionable(ctx: Any, project_id: int, path: str | None = None) -> str | None:
    """Why a handler must leave this project alone, or None. The body's path is only a cheap
    first filter; the allow-list and the secret's binding are checked against the project as
    GitLab's API describes it (tasks/gitlab/facts.py)."""
    if path and not project_allowed(ctx.settings, project_id, path) \
            and not any(e == str(project_id) for e in ctx.settings.gitlab_projects):
        return "project is not in GITLAB_PROJECTS"
    return check_project(ctx, project_id)


def triage(ctx: Any, pipe: PipelineRef, failed: list[FailedJob]) -> list[dict[str, Any]]:
    """Classify and react to `failed` jobs of one pipeline; then refresh comment and labels."""
    settings, gitlab = ctx.settings, ctx.gitlab
    store = Store(ctx.redis)
    store.record_pipeline(pipe.project, pipe.ref, pipe.pipeline, {"status": "failed", "sha": pipe.sha})
    known = {row["name"]: row for row in store.job_rows(pipe.project, pipe.pipeline)}
    total_failed = max(len(failed), sum(1 for r in known.values() if r.get("status") == "failed"))
    outage = total_failed > settings.outage_job_threshold
    rows = []
    for job in failed:
        prior = known.get(job.name)
        if prior and prior.get("job_id") == job.id:
            rows.append(prior)  # this very job was already triaged (the other hook kind)
            continue
        verdict = classify_job(ctx, pipe.project, job)
        metrics.JOB_FAILURES.labels(category=verdict["category"]).inc()
        row = {"name": job.name, "stage": job.stage, "job_id": job.id, "status": "failed",
               "failure_reason": job.failure_reason, **verdict}
        row.update(react(ctx, store, pipe, job, verdict, outage=outage, failed_count=total_failed))
        remember(ctx, pipe, job, row)
        # The same job failing again and again for one infrastructure reason: a CI change.
        observe(ctx, pipe, job, row, outage=outage)
        store.put_job_row(pipe.project, pipe.pipeline, row)
        rows.append(row)
        ctx.decide(row["action_kind"], job=job.id, name=job.name, category=row["category"],
                   rule=row["rule"], what=row["action"])
    store.record_failed_sha(pipe.project, pipe.sha, [j.name for j in failed], "jobs")
    if any(r["category"] in ("test_failure", "flaky_test") for r in rows):
        store.record_failed_sha(pipe.project, pipe.sha, failed_tests(gitlab, pipe), "tests")
    explain(ctx, store, pipe, passed=False)
    return rows


def classify_job(ctx: Any, project: int, job: FailedJob) -> dict[str, Any]:
    """The job's log through the layered classifier; the verdict as a plain dict for the row."""

    truncated = 0
    try:
        joblog = ctx.gitlab.job_log(project, job.id)
        chunks, truncated = [joblog.data], joblog.truncated_bytes
    except GitLabError as exc:
        # A missing log still classifies on failure_reason; say so rather than fail the task.
        log.warning("job log unavailable: %s", exc, extra={"job": job.id})
        chunks = []
    verdict = Classifier(ctx.rules, Corrections(ctx.redis)).classify(
        chunks, failure_reason=job.failure_reason, job_name=job.name, stage=job.stage)
    # Line numbers count from the start of the tail we read when the log was truncated.
    evidence = [{"line": e.line, "text": e.text, "section": e.section}
                for e in verdict.evidence[:3]]
    return {"category": verdict.category, "rule": verdict.rule_id or "none",
            "layer": verdict.layer, "confidence": verdict.confidence, "why": verdict.reason,
            "description": verdict.description, "next_steps": verdict.next_steps,
            "reaction": verdict.reaction.kind if verdict.may_retry or
            verdict.reaction.kind != "retry" else "none",
            "max_retries": verdict.reaction.max_retries,
            "rule_labels": list(verdict.reaction.labels), "evidence": evidence,
            "error_lines": [{"line": ln.number, "text": ln.text[:400]}
                            for ln in verdict.error_lines],
            "exit_code": verdict.exit_code, "tool": verdict.tool,
            "command": verdict.failing_command.text if verdict.failing_command else None,
            "signature": verdict.signature, "signature_line": verdict.signature_line,
            "original_category": verdict.original_category,
            "also_matched": list(verdict.also_matched), "log_truncated_bytes": truncated}


def remember(ctx: Any, pipe: PipelineRef, job: FailedJob, row: dict[str, Any]) -> None:
    """Signature history for "similar failures", and unknown failures as examples to learn from."""
    FailureHistory(ctx.redis).record(row["signature"], project=pipe.project,
                                     pipeline=pipe.pipeline, job=job.id, sha=pipe.sha,
                                     job_name=job.name, ref=pipe.ref,
                                     default_branch=pipe.default_branch)
    if row["category"] == "unknown":
        Corrections(ctx.redis).unknown(row["signature"], example_of(pipe, job, row))


def example_of(pipe: PipelineRef, job: FailedJob, row: dict[str, Any]) -> dict[str, Any]:
    """A failure as a labelled example: where it happened and the lines a person would read."""
    lines = [e["text"] for e in row.get("evidence") or []]
    lines += [e["text"] for e in row.get("error_lines") or [] if e["text"] not in lines]
    return {"project": pipe.project, "project_path": pipe.project_path,
            "pipeline": pipe.pipeline, "job": job.id, "job_name": job.name, "stage": job.stage,
            "failure_reason": job.failure_reason, "classified_as": row["category"],
            "rule": row.get("rule"), "layer": row.get("layer"), "command": row.get("command"),
            "lines": lines}


def react(ctx: Any, store: Store, pipe: PipelineRef, job: FailedJob, verdict: dict[str, Any], *,
          outage: bool, failed_count: int) -> dict[str, Any]:
    """Retry, hand off, or only report; returns the row's action fields."""
    settings = ctx.settings
    category, rule = verdict["category"], verdict["rule"]
    budget = min(settings.retry_budget, verdict["max_retries"] or settings.retry_budget)
    if verdict["reaction"] == "retry" and category not in NEVER_RETRY:
        if outage:
            return _action("report", f"not retried: {failed_count} jobs failed at once "
                                     "(looks like an outage, not a flake)")
        if budget <= 0:
            return _action("report", "not retried: retry budget is 0")
        projects = store.breaker_hit(rule, pipe.project, settings.breaker_window_seconds)
        if projects > settings.breaker_projects:
            incident = open_incident(ctx, store, rule, category, projects)
            return _action("report", f"not retried: rule {rule} is failing in {projects} projects "
                                     f"at once (incident {incident})")
        attempt, fresh = store.claim_retry(pipe.project, pipe.pipeline, job.name, job.id, budget)
        if attempt == 0:
            return _action("report", f"not retried: retry budget used ({budget} of {budget})")
        if settings.dry_run:
            if fresh:
                store.release_retry(pipe.project, pipe.pipeline, job.name, job.id, attempt)
            return _action("retry", f"would retry, attempt {attempt} of {budget} (dry run)")
        # Whether this call took the claim or an earlier attempt did (and may have died before
        # or after its POST), GitLab says whether the retry exists; the comment says only that.
        try:
            # Two deliveries of one pipeline (a resend, the reconcile pass) must not both find
            # "no retry yet" while the other's POST is in flight.
            with store.lock(f"retry:{pipe.project}:{job.id}"):
                new_job = ensure_retried(ctx, pipe, job)
        except RetryRefused as refused:
            store.release_retry(pipe.project, pipe.pipeline, job.name, job.id, attempt)
            metrics.EFFECTS_REFUSED.labels(effect="retry_job").inc()
            return _action("report", f"could not retry `{job.name}`: {refused}")
        return _action("retry", f"retried, attempt {attempt} of {budget}",
                       new_job=new_job.get("id"))
    if category in NEVER_RETRY or verdict["reaction"] == "fix":
        handed = hand_off_fix(ctx, store, pipe, job, verdict)
        reason = category.replace("_", " ")
        return _action("fix", f"not retried: {reason}; {handed}")
    if verdict["reaction"] == "retry":
        return _action("report", f"not retried: {category.replace('_', ' ')}")
    return _action("report", "not retried: " + (category.replace("_", " ") if category != "unknown"
                                                else "no rule matched"))


class RetryRefused(Exception):
    """GitLab refused a job retry for good (str: why, in words for the comment)."""


def _retried_as(gitlab: Any, pipe: PipelineRef, job: FailedJob) -> dict[str, Any] | None:
    """The job's retry, if GitLab has one: the pipeline's latest job of that name is newer."""
    for other in gitlab.pipeline_jobs(pipe.project, pipe.pipeline):
        if other.get("name") == job.name and int(other.get("id") or 0) > job.id:
            return other
    return None


def ensure_retried(ctx: Any, pipe: PipelineRef, job: FailedJob) -> dict[str, Any]:
    """The job's retry, made at most once: an existing one is returned, an ambiguous POST
    (timeout, 5xx: it may have been applied) is resolved by reading, never by re-sending, and
    a 403 for a job that was retried meanwhile is that retry."""

    gitlab = ctx.gitlab
    existing = _retried_as(gitlab, pipe, job)
    if existing is not None:
        return existing
    try:
        return gitlab.retry_job(pipe.project, job.id)
    except GitLabUnavailable:
        existing = _retried_as(gitlab, pipe, job)
        if existing is not None:
            return existing
        raise  # not applied: transient, the delivery runs again and completes the claim
    except Forbidden as exc:
        existing = _retried_as(gitlab, pipe, job)
        if existing is not None:
            return existing
        raise RetryRefused(_why_forbidden(ctx, pipe, "retry a job", exc)) from None


def _why_forbidden(ctx: Any, pipe: PipelineRef, what: str, exc: Exception) -> str:
    """A 403 in words a person can act on: the bot's access, when that is the reason."""
    try:
        bot = ctx.gitlab.current_user()
        level = int(ctx.gitlab.access_level(pipe.project, int(bot["id"])))
    except (GitLabError, KeyError, TypeError, ValueError):
        level = None
    where = pipe.project_path or f"project {pipe.project}"
    if level is not None and level < 30:
        have = LEVEL_NAMES.get(level, "no") if level else "no"
        return (f"the bot has {have} access to {where} and needs Developer to {what}; "
                "a Maintainer can raise it in Project information → Members")
    return f"GitLab refused ({str(exc)[:200]})"


def _action(kind: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"action_kind": kind, "action": text, **extra}


def hand_off_fix(ctx: Any, store: Store, pipe: PipelineRef, job: FailedJob,
                 verdict: dict[str, Any]) -> str:
    """Queue `fix_build` once per (pipeline, job name): it files or updates the fix issue."""
    if ctx.settings.dry_run:
        return "would hand off a fix task (dry run)"
    # Keyed by what it acts on: a redelivered pipeline asks again and the engine runs it once.
    ctx.enqueue("devops_agent.fix_build", {
        "project": pipe.project, "ref": pipe.ref, "sha": pipe.sha, "pipeline": pipe.pipeline,
        "job": {"id": job.id, "name": job.name, "stage": job.stage}, "verdict": verdict,
    }, key=f"fix:{pipe.project}:{pipe.pipeline}:{job.name}")
    return "handed off as a fix task"


def open_incident(ctx: Any, store: Store, rule: str, category: str, projects: int) -> str:
    """One incident issue per rule while its breaker is open."""
    target = ctx.settings.incident_project
    if not target or ctx.settings.dry_run:
        return "not filed: set INCIDENT_PROJECT" if not target else "(dry run)"
    key = f"incident:{rule}"
    body = (f"{marker('incident:' + rule)}\nRule `{rule}` ({category}) fired in {projects} "
            f"projects within {ctx.settings.breaker_window_seconds // 60} minutes, so devops-agent "
            f"stopped retrying it.\n\nProjects: {', '.join(store.breaker_projects(rule))}\n")
    with store.lock(key):
        iid = store.get_map(key)
        if iid:
            ctx.gitlab.update_issue(target, int(iid), description=body)
            return f"#{iid}"
        issue = ctx.gitlab.create_issue(target, f"devops-agent: {rule} is failing in many "
                                                f"projects", body, ["devops-agent:incident"])
        store.set_map(key, str(issue["iid"]), ttl=ctx.settings.breaker_window_seconds * 6)
        return f"#{issue['iid']}"


def failed_tests(gitlab: Any, pipe: PipelineRef) -> list[str]:

    try:
        report = gitlab.test_report(pipe.project, pipe.pipeline)
    except GitLabError:
        return []
    names = []
    for suite in report.get("test_suites", []) or []:
        for case in suite.get("test_cases", []) or []:
            if case.get("status") in ("failed", "error"):
                names.append(f"{case.get('classname') or suite.get('name')}::{case.get('name')}")
    return names[:200]


def passed(ctx: Any, pipe: PipelineRef) -> str:
    """A pipeline succeeded: record flakes for its SHA and flip the ref's comment and labels."""
    store = Store(ctx.redis)
    history = FailureHistory(ctx.redis)
    failed_jobs = store.failed_on_sha(pipe.project, pipe.sha, "jobs")
    if failed_jobs:
        store.mark_flaky(pipe.project, sorted(failed_jobs), "jobs", pipe.sha)
        store.mark_flaky(pipe.project, sorted(store.failed_on_sha(pipe.project, pipe.sha, "tests")),
                         "tests", pipe.sha)
        for name in failed_jobs:
            history.passed_on_retry(project=pipe.project, sha=pipe.sha, job_name=name)
    if pipe.default_branch and pipe.ref == pipe.default_branch:
        history.trunk_passed(pipe.project)
    before = store.ref_state(pipe.project, pipe.ref)
    if not store.record_pipeline(pipe.project, pipe.ref, pipe.pipeline,
                                 {"status": "success", "sha": pipe.sha}):
        return "older pipeline"
    if before is None or before.get("status") != "failed":
        return "nothing to update"
    explain(ctx, store, pipe, passed=True, failed_pipeline=before["pipeline"])
    return "updated"
