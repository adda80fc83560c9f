"""`/devops approve <env>`: one approval for deploying an environment from this issue."""

from tasks.chatops.core import Invocation, command
from tasks.deploy.gates import access_level, check_access
from tasks.platform.handlers import CommandHelp


@command("approve", CommandHelp(
    usage="approve <env>",
    description="Approve deploying an environment from this issue (for environments that "
                "need approvals; on merge requests, GitLab's own approvals count). The deploy "
                "gate reads these notes back from GitLab; your own approval of your own deploy "
                "does not count.",
    examples=("/devops approve production",),
    who="anyone allowed to deploy to the environment"))
def run(inv: Invocation) -> str:
    if len(inv.args) != 1:
        inv.reply("❌ usage: approve <env>")
        return "usage"
    env = inv.args[0].lower()
    access = inv.config.env_access(env)
    if access is None:
        inv.reply(f"❌ unknown environment `{env}`.")
        return "unknown environment"
    gate = check_access(access_level(inv.ctx.gitlab, inv.ctx.redis, inv.project, inv.user_id),
                        access.min_level, env)
    if not gate.passed:
        inv.audit("refused", env=env, gates=[gate.as_dict()])
        inv.reply(f"❌ your approval does not count: {gate.detail}")
        return "refused"
    if inv.kind == "mr":
        inv.reply("ℹ️ on a merge request, approve it in GitLab: the deploy gate reads GitLab's "
                  "own approvals there.")
        return "use gitlab approvals"
    inv.audit("succeeded", env=env)
    inv.reply(f"👍 approval recorded: @{inv.username} approves deploying `{env}` from this issue.")
    return "approved"
