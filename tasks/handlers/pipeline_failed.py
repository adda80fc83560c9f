"""Failed pipelines: classify each failed job, then retry, hand off or explain."""

from __future__ import annotations

from tasks.handlers import HelpRecord, handler
from tasks.triage import FailedJob, PipelineRef, project_allowed, triage

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
    if not project_allowed(ctx.settings, event.project.id, event.project.path_with_namespace):
        return ctx.decide("ignored", reason="project is not in GITLAB_PROJECTS",
                          project=event.project.id)
    if ctx.gitlab is None:
        return ctx.decide("skip", reason="GITLAB_URL/GITLAB_TOKEN not configured")
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
    pipe = PipelineRef(project=event.project.id, pipeline=attrs.id, ref=attrs.ref or "",
                       sha=attrs.sha or "", mr_iid=event.merge_request.iid if event.merge_request else None,
                       commit_message=event.commit.message if event.commit else None,
                       project_path=event.project.path_with_namespace)
    triage(ctx, pipe, failed)
