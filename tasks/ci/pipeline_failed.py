"""Failed pipelines: classify each failed job, then retry, hand off or explain."""

from __future__ import annotations

import dataclasses

import orjson

from tasks.ci.pipeline import FailedJob, verified_pipeline
from tasks.ci.triage import MAX_FAILED_JOBS, not_actionable, triage
from tasks.gitlab.client import NotFound
from tasks.platform.handlers import HelpRecord, handler
from tasks.platform.store import Store

HELP = HelpRecord(
    description="Classifies the failed jobs of a failed pipeline against the rules table, retries "
                "what is worth retrying within budgets, hands code failures on as fix issues, and "
                "explains every decision in one comment on the linked issues, with labels.",
    config="GITLAB_PROJECTS, RETRY_BUDGET, OUTAGE_JOB_THRESHOLD, BREAKER_*, LABEL_*, FIX_*",
)


def triaged_key(project: int, pipeline: int) -> str:
    """Marked once a pipeline was triaged; the reconciler skips it (tasks/platform/store.py `mark`)."""
    return f"pipeline-triaged:{project}:{pipeline}"


@handler("pipeline_failed", kinds=("pipeline",), help=HELP)
def handle(event, ctx):
    attrs = event.object_attributes
    if attrs.status != "failed":
        return ctx.decide("skip", reason=f"pipeline status is {attrs.status}")
    reason = not_actionable(ctx, event.project.id, event.project.path_with_namespace)
    if reason:
        return ctx.decide("ignored", reason=reason, project=event.project.id)
    # The body says which pipeline; GitLab says what it is and which of its jobs failed.
    try:
        pipe, raw = verified_pipeline(ctx, event.project.id, attrs.id,
                                      event.merge_request.iid if event.merge_request else None)
        status = raw.get("status")
    except NotFound:
        return ctx.decide("skip", reason=f"GitLab has no pipeline {attrs.id} in this project")
    # A triage that was cut short (a timeout, a killed worker) may have retried a job already,
    # which makes GitLab report the pipeline running: it is finished from the jobs it started
    # with, so the comment says what happened to them.
    started_key = f"da:triage-jobs:{event.project.id}:{attrs.id}"
    started = ctx.redis.get(started_key)
    if status != "failed" and started is None:
        return ctx.decide("skip", reason=f"GitLab says pipeline {attrs.id} is {status}")
    if started is not None:
        failed = [FailedJob(**row) for row in orjson.loads(started)]
    else:
        failed = [FailedJob(j["id"], j["name"], j.get("stage", ""), j.get("failure_reason"))
                  for j in ctx.gitlab.pipeline_jobs(event.project.id, attrs.id, scope="failed")
                  if not j.get("allow_failure")][:MAX_FAILED_JOBS]
        if not failed:
            return ctx.decide("skip", reason="no failed job that is not allowed to fail")
        ctx.redis.set(started_key, orjson.dumps([dataclasses.asdict(job) for job in failed]), ex=86400)
    triage(ctx, pipe, failed)
    ctx.redis.delete(started_key)
    # The reconcile pass skips what is marked here (a late webhook is deduplicated by the
    # handlers' own effect keys either way).
    Store(ctx.redis).mark(triaged_key(event.project.id, attrs.id))
