"""`/devops retry [job-name]`: retry the failed jobs of the latest pipeline."""

from tasks.chatops.core import Invocation, command
from tasks.config.agent import ACCESS_LEVELS
from tasks.deploy.gates import access_level, check_access
from tasks.platform.handlers import CommandHelp


@command("retry", CommandHelp(
    usage="retry [job-name]",
    description="Retry the failed jobs (or the one named) of the latest pipeline of this merge "
                "request's source branch, or of the default branch.",
    examples=("/devops retry", "/devops retry integration-tests")))
def run(inv: Invocation) -> str:
    level = access_level(inv.ctx.gitlab, inv.ctx.redis, inv.project, inv.user_id)
    gate = check_access(level, ACCESS_LEVELS["developer"], "retry")
    if not gate.passed:
        inv.audit("refused", gates=[gate.as_dict()])
        inv.reply(f"❌ refused by the **access** gate: {gate.detail}")
        return "refused"
    ref = inv.default_ref()
    latest = inv.ctx.gitlab.latest_pipeline(inv.project, ref) if ref else None
    if latest is None:
        inv.reply(f"❌ `{ref}` has no pipeline to retry.")
        return "no pipeline"
    jobs = inv.ctx.gitlab.pipeline_jobs(inv.project, latest["id"], scope="failed")
    if inv.args:
        jobs = [j for j in jobs if j["name"] == inv.args[0]]
    if not jobs:
        inv.reply(f"nothing to retry: pipeline #{latest['id']} has no failed job"
                  f"{f' named `{inv.args[0]}`' if inv.args else ''}.")
        return "nothing"
    done = []
    for job in jobs[:20]:
        if inv.store.once(f"chat-retry:{inv.project}:{job['id']}"):
            inv.ctx.gitlab.retry_job(inv.project, job["id"])
        done.append(f"`{job['name']}`")
    inv.audit("succeeded", pipeline=latest["id"], jobs=[j["id"] for j in jobs[:20]])
    inv.reply(f"✅ retried {', '.join(done)} in pipeline #{latest['id']}.")
    return "retried"
