"""`/devops promote <env>`: continue a paused blue-green switch or canary."""

from tasks.chatops.core import Invocation, command, request_action, split_force
from tasks.platform.handlers import CommandHelp


@command("promote", CommandHelp(
    usage="promote <env>",
    description="Switch traffic to the new colour (blue-green with manual switch) or promote a "
                "paused canary to 100%.",
    examples=("/devops promote production",),
    who="per environment, like deploy"))
def run(inv: Invocation) -> str:
    args, reason, error = split_force(inv.args)
    if error or len(args) != 1:
        inv.reply(f"❌ {error or 'usage: promote <env>'}")
        return "usage"
    return request_action(inv, "promote", args[0].lower(), force_reason=reason)
