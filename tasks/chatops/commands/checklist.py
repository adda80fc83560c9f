"""`/devops checklist <env> [ref]`: every gate a deploy would pass through, nothing deployed."""

from tasks.chatops.core import Invocation, command, request_action
from tasks.platform.handlers import CommandHelp


@command("checklist", CommandHelp(
    usage="checklist <env> [ref]",
    description="Show the pre-deployment checklist for an environment: each gate with ✅ or ❌ "
                "and why, for the SHA a deploy would ship. Deploys nothing.",
    examples=("/devops checklist production",), who="anyone who can comment"))
def run(inv: Invocation) -> str:
    if not inv.args or len(inv.args) > 2:
        inv.reply("❌ usage: checklist <env> [ref]")
        return "usage"
    return request_action(inv, "deploy", inv.args[0].lower(),
                          ref=inv.args[1] if len(inv.args) > 1 else None, dry_run=True)
