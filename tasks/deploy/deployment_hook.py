"""Deployment Hooks: record what runs where, for /status and for auto-deploy decisions."""

from __future__ import annotations

from tasks.deploy import keys
from tasks.platform.handlers import HelpRecord, handler

HELP = HelpRecord(description="Records deployments GitLab reports (environment, ref, status), "
                              "shown by the status command.")


@handler("deployment_status", kinds=("deployment",), help=HELP)
def handle(event, ctx):
    key = keys.gitlab_deployment(event.project.id, event.environment)
    ctx.redis.hset(key, mapping={"status": event.status, "ref": event.ref or "",
                                 "sha": event.sha or "", "deployment": event.deployment_id or 0})
    ctx.redis.expire(key, 90 * 86400)
    return ctx.decide("deployment", environment=event.environment, status=event.status,
                      ref=event.ref, sha=event.sha)
