"""Job Hooks: triage a failed job as soon as it fails; note flakes when a retried job passes."""

from __future__ import annotations

from tasks.failure_history import FailureHistory
from tasks.handlers import HelpRecord, handler
from tasks.linking import mr_iid_from_ref
from tasks.store import Store
from tasks.triage import FailedJob, PipelineRef, project_allowed, triage

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
    if not project_allowed(ctx.settings, event.project_id, path):
        return ctx.decide("ignored", reason="project is not in GITLAB_PROJECTS")
    sha = event.sha or ""
    if event.build_status == "success":
        store = Store(ctx.redis)
        if event.build_name in store.failed_on_sha(event.project_id, sha, "jobs"):
            store.mark_flaky(event.project_id, [event.build_name], "jobs", sha)
            FailureHistory(ctx.redis).passed_on_retry(project=event.project_id, sha=sha,
                                                      job_name=event.build_name)
            return ctx.decide("flaky", job=event.build_id, name=event.build_name)
        return ctx.decide("skip", reason="job passed")
    if event.build_allow_failure:
        return ctx.decide("skip", reason="job is allowed to fail")
    if ctx.gitlab is None or event.pipeline_id is None:
        return ctx.decide("skip", reason="no GitLab configured or no pipeline id")
    pipe = PipelineRef(project=event.project_id, pipeline=event.pipeline_id, ref=event.ref or "",
                       sha=sha, mr_iid=mr_iid_from_ref(event.ref),
                       commit_message=event.commit.message if event.commit else None,
                       project_path=path,
                       default_branch=event.project.default_branch if event.project else None)
    triage(ctx, pipe, [FailedJob(event.build_id, event.build_name, event.build_stage,
                                 event.build_failure_reason)])
