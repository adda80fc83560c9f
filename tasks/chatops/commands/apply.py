"""`/devops apply <env>`: apply the environment's last plan, for exactly its SHA."""

from tasks.chatops.core import Invocation, command
from tasks.infra.chat import run_apply
from tasks.platform.handlers import CommandHelp


@command("apply", CommandHelp(
    usage="apply <env>",
    description="Apply the environment's last plan with server-side apply, only while its ref "
                "still points at the planned SHA (a newer commit needs a new plan), after the "
                "deploy gates and under the deploy lock; then waits for the rollouts it "
                "started and reports, per object, what the API server confirmed.",
    examples=("/devops apply staging",),
    who="Maintainers and above (per environment: `manifests.apply_access`, and at least "
        "what deploying there needs)"))
def run(inv: Invocation) -> str:
    if len(inv.args) != 1:
        inv.reply("❌ usage: apply <env>")
        return "usage"
    return run_apply(inv, inv.args[0].lower()[:63])
