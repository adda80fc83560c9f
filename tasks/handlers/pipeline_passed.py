"""Passed pipelines: update earlier failure comments and flip the CI labels."""

from __future__ import annotations

from tasks.handlers import HelpRecord, handler
from tasks.triage import PipelineRef, passed, project_allowed

HELP = HelpRecord(
    description="When a later pipeline for the same ref passes, the failure comment says so and "
                "the labels flip to the passed label; jobs that passed on retry are recorded as flaky.",
)


@handler("pipeline_passed", kinds=("pipeline",), help=HELP)
def handle(event, ctx):
    attrs = event.object_attributes
    if attrs.status != "success":
        return ctx.decide("skip", reason=f"pipeline status is {attrs.status}")
    if not project_allowed(ctx.settings, event.project.id, event.project.path_with_namespace):
        return ctx.decide("ignored", reason="project is not in GITLAB_PROJECTS")
    if ctx.gitlab is None:
        return ctx.decide("skip", reason="GITLAB_URL/GITLAB_TOKEN not configured")
    pipe = PipelineRef(project=event.project.id, pipeline=attrs.id, ref=attrs.ref or "",
                       sha=attrs.sha or "", mr_iid=event.merge_request.iid if event.merge_request else None,
                       commit_message=event.commit.message if event.commit else None)
    return ctx.decide("passed", outcome=passed(ctx, pipe), pipeline=attrs.id)
