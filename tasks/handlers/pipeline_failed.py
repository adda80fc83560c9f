"""Failed pipelines: classify each failed job, then retry, hand off or explain."""

from __future__ import annotations

from tasks.handlers import HelpRecord, handler
from tasks.triage import FailedJob, not_actionable, pipeline_ref, triage

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
    builds = event.builds
    if builds:
        failed = [FailedJob(b.id, b.name, b.stage, b.failure_reason)
                  for b in builds if b.status == "failed" and not b.allow_failure]
    else:  # older GitLab or a trimmed payload: ask the API
        failed = [FailedJob(j["id"], j["name"], j.get("stage", ""), j.get("failure_reason"))
                  for j in ctx.gitlab.pipeline_jobs(event.project.id, attrs.id, scope="failed")
                  if not j.get("allow_failure")]
    if not failed:
        return ctx.decide("skip", reason="no failed job that is not allowed to fail")
    triage(ctx, pipeline_ref(event), failed)
