"""Failed pipelines: classify each failed job, then retry, hand off or explain."""

from __future__ import annotations

from tasks.adapters.gitlab import NotFound
from tasks.handlers import HelpRecord, handler
from tasks.triage import MAX_FAILED_JOBS, FailedJob, not_actionable, triage, verified_pipeline

HELP = HelpRecord(
    description="Classifies the failed jobs of a failed pipeline against the rules table, retries "
                "what is worth retrying within budgets, hands code failures on as fix issues, and "
                "explains every decision in one comment on the linked issues, with labels.",
    config="GITLAB_PROJECTS, RETRY_BUDGET, OUTAGE_JOB_THRESHOLD, BREAKER_*, LABEL_*, FIX_*",
)


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
    if status != "failed":
        return ctx.decide("skip", reason=f"GitLab says pipeline {attrs.id} is {status}")
    failed = [FailedJob(j["id"], j["name"], j.get("stage", ""), j.get("failure_reason"))
              for j in ctx.gitlab.pipeline_jobs(event.project.id, attrs.id, scope="failed")
              if not j.get("allow_failure")][:MAX_FAILED_JOBS]
    if not failed:
        return ctx.decide("skip", reason="no failed job that is not allowed to fail")
    triage(ctx, pipe, failed)
