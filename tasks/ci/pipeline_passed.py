"""Passed pipelines: update earlier failure comments and flip the CI labels."""

from __future__ import annotations

from tasks.ci.pipeline import PipelineRef, verified_pipeline
from tasks.ci.triage import not_actionable, passed
from tasks.config.agent import EnvAccess
from tasks.deploy.gates import LEVEL_NAMES, evaluate
from tasks.deploy.requests import DeployRequest
from tasks.gitlab.client import NotFound
from tasks.platform import audit
from tasks.platform.handlers import HelpRecord, handler

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
    try:
        pipe, raw = verified_pipeline(ctx, event.project.id, attrs.id,
                                      event.merge_request.iid if event.merge_request else None)
        status = raw.get("status")
    except NotFound:
        return ctx.decide("skip", reason=f"GitLab has no pipeline {attrs.id} in this project")
    if status != "success":
        return ctx.decide("skip", reason=f"GitLab says pipeline {attrs.id} is {status}")
    ctx.decide("passed", outcome=passed(ctx, pipe), pipeline=attrs.id)
    if not raw.get("tag"):
        auto_deploy(ctx, pipe, raw.get("user") or {})


def auto_deploy(ctx, pipe: PipelineRef, pusher: dict) -> None:
    """Deploy every environment whose rule takes this ref (e.g. staging on the default branch),
    through the same gates as a command: the person who started the pipeline is the actor and
    needs the environment's `auto_deploy.min_access_level`; locks, freezes, deny windows and
    the checklist apply. Production-like environments default to `manual`."""
    default_branch = pipe.default_branch or "main"
    for name, env in sorted(ctx.config.environments.items()):
        if not env.auto_deploys(pipe.ref, default_branch):
            continue
        access = ctx.config.env_access(name) or EnvAccess()
        level = env.auto_deploy.min_access_level
        access = access.model_copy(update={"min_access": LEVEL_NAMES.get(level, "maintainer").lower()})
        actor = f"{pusher.get('username') or 'unknown'} (auto-deploy)"
        decision = evaluate(ctx.gitlab, ctx.redis, access, project=pipe.project, env=name,
                            ref=pipe.ref, user_id=int(pusher.get("id") or 0),
                            username=pusher.get("username"), force_reason=None,
                            history=ctx.deployer, env_config=env)
        gates = [g.as_dict() for g in decision.gates]
        if decision.checked is not None and decision.checked.pipeline != pipe.pipeline:
            ctx.decide("auto-deploy-skipped", env=name, reason=f"pipeline #"
                       f"{decision.checked.pipeline} is newer for {pipe.ref}; it deploys instead")
            continue
        if not decision.allowed:
            refusing = decision.refusing()
            audit.record(ctx.redis, project=pipe.project, project_path=pipe.project_path,
                         where=f"pipeline:{pipe.pipeline}", user=actor, command="auto-deploy",
                         action="deploy", outcome="refused", env=name, gates=gates)
            ctx.decide("auto-deploy-refused", env=name, gate=refusing.name if refusing else "?",
                       detail=refusing.detail if refusing else "")
            continue
        ticket = ctx.deployer.submit(DeployRequest(
            project=pipe.project, env=name, action="deploy", ref=pipe.ref,
            sha=decision.checked.sha if decision.checked else pipe.sha, requested_by=actor,
            request_id=f"auto:{pipe.project}:{pipe.pipeline}:{name}"))
        audit.record(ctx.redis, project=pipe.project, project_path=pipe.project_path,
                     where=f"pipeline:{pipe.pipeline}", user=actor, command="auto-deploy",
                     action="deploy", outcome=ticket.status, env=name, gates=gates,
                     deploy_id=ticket.deploy_id)
        ctx.decide("auto-deploy", env=name, ref=pipe.ref, status=ticket.status,
                   deploy_id=ticket.deploy_id, detail=ticket.detail)
