"""`/devops plan <env> [ref]`: what applying the environment's manifests would change."""

from tasks.chatops.core import Invocation, command
from tasks.infra.chat import run_plan
from tasks.platform.handlers import CommandHelp


@command("plan", CommandHelp(
    usage="plan <env> [ref]",
    description="Plan the environment's Kubernetes manifests (`environments.<env>.manifests`) "
                "at a ref (default: this merge request's source branch, else the default "
                "branch): each object is checked against the environment's policy and "
                "dry-run applied on the API server, and the reply lists what would be "
                "created, changed (field by field), left unchanged, and prune candidates. "
                "Nothing is changed in the cluster.",
    examples=("/devops plan staging", "/devops plan staging feature/cache"),
    who="Developers and above (per environment: `manifests.plan_access`)"))
def run(inv: Invocation) -> str:
    if not inv.args or len(inv.args) > 2:
        inv.reply("❌ usage: plan <env> [ref]")
        return "usage"
    return run_plan(inv, inv.args[0].lower()[:63], inv.args[1] if len(inv.args) > 1 else None)
