"""Job Hooks: triage a failed job as soon as it fails; note flakes when a retried job passes."""

from __future__ import annotations

from tasks.ci.history import FailureHistory
from tasks.ci.pipeline import FailedJob, verified_pipeline
from tasks.ci.triage import not_actionable, triage
from tasks.gitlab.client import NotFound
from tasks.platform.handlers import HelpRecord, handler
from tasks.platform.store import Store

HELP = HelpRecord(
    description="Triages a failed job as soon as it fails (Job Hook), without waiting for the "
                "whole pipeline; jobs allowed to fail are skipped. A job that passes after failing "
                "on the same commit is recorded as flaky.",
)


@handler("job_failed", kinds=("job",), help=HELP)
def handle(event, ctx):
    path = event.project.path_with_namespace if event.project else None
    if event.build_status not in ("failed", "success"):
        return ctx.decide("skip", reason=f"job status is {event.build_status}")
    reason = not_actionable(ctx, event.project_id, path)
    if reason:
        return ctx.decide("ignored", reason=reason)
    # The body names the job; GitLab says what it is: status, name, stage, pipeline, SHA.
    try:
        job = ctx.gitlab.get_job(event.project_id, event.build_id)
    except NotFound:
        return ctx.decide("skip", reason=f"GitLab has no job {event.build_id} in this project")
    status, name = job.get("status"), str(job.get("name") or "")
    pipeline = job.get("pipeline") or {}
    sha = str(pipeline.get("sha") or "")
    if status == "success":
        store = Store(ctx.redis)
        if name in store.failed_on_sha(event.project_id, sha, "jobs"):
            store.mark_flaky(event.project_id, [name], "jobs", sha)
            FailureHistory(ctx.redis).passed_on_retry(project=event.project_id, sha=sha,
                                                      job_name=name)
            return ctx.decide("flaky", job=event.build_id, name=name)
        return ctx.decide("skip", reason="job passed")
    if status != "failed":
        return ctx.decide("skip", reason=f"GitLab says job {event.build_id} is {status}")
    if job.get("allow_failure"):
        return ctx.decide("skip", reason="job is allowed to fail")
    if not pipeline.get("id"):
        return ctx.decide("skip", reason="GitLab names no pipeline for this job")
    pipe, _ = verified_pipeline(ctx, event.project_id, int(pipeline["id"]))
    triage(ctx, pipe, [FailedJob(int(job["id"]), name, str(job.get("stage") or ""),
                                 job.get("failure_reason"))])
