"""Passed pipelines: update earlier failure comments and flip the CI labels."""

from __future__ import annotations

from tasks.handlers import HelpRecord, handler
from tasks.triage import PipelineRef, not_actionable, passed, pipeline_ref

HELP = HelpRecord(
    description="When a later pipeline for the same ref passes, the failure comment says so and "
                "the labels flip to the passed label; jobs that passed on retry are recorded as "
                "flaky. Environments with an auto-deploy rule (feature branches, the default "
                "branch) are deployed from the passing pipeline.",
)


@handler("pipeline_passed", kinds=("pipeline",), help=HELP)
def handle(event, ctx):
    attrs = event.object_attributes
    if attrs.status != "success":
        return ctx.decide("skip", reason=f"pipeline status is {attrs.status}")
    reason = not_actionable(ctx, event.project.id, event.project.path_with_namespace)
    if reason:
        return ctx.decide("ignored", reason=reason)
    pipe = pipeline_ref(event)
    ctx.decide("passed", outcome=passed(ctx, pipe), pipeline=attrs.id)
    auto_deploy(event, ctx, pipe)


def auto_deploy(event, ctx, pipe: PipelineRef) -> None:
    """Deploy every environment whose rule takes this ref (e.g. staging on the default branch).
    Production-like environments default to `manual` and are never deployed from here."""
    from tasks.chatops.deployer import DeployRequest

    if attrs_is_tag(event) or not ctx.config.environments:
        return
    default_branch = event.project.default_branch or "main"
    for name, env in sorted(ctx.config.environments.items()):
        if not env.auto_deploys(pipe.ref, default_branch):
            continue
        ticket = ctx.deployer.submit(DeployRequest(
            project=pipe.project, env=name, action="deploy", ref=pipe.ref, sha=pipe.sha,
            requested_by="devops-agent (auto-deploy)",
            request_id=f"auto:{pipe.project}:{pipe.pipeline}:{name}"))
        ctx.decide("auto-deploy", env=name, ref=pipe.ref, status=ticket.status,
                   deploy_id=ticket.deploy_id, detail=ticket.detail)


def attrs_is_tag(event) -> bool:
    return bool(event.object_attributes.tag)
