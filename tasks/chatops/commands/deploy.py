"""`/devops deploy <env> [ref] [--force "reason"]`"""

from tasks.chatops.core import Invocation, command, request_action, split_force
from tasks.handlers import CommandHelp


@command("deploy", CommandHelp(
    usage='deploy <env> [ref] [--force "reason"]',
    description="Deploy the ref (default: the merge request's source branch, or the default "
                "branch) to an environment, after the environment's gates.",
    examples=("/devops deploy staging", '/devops deploy production v1.4.2'),
    who="per environment (default: staging Developer, production Maintainer)"))
def run(inv: Invocation) -> str:
    args, reason, error = split_force(inv.args)
    if error or not args or len(args) > 2:
        inv.reply(f"❌ {error or 'usage: deploy <env> [ref]'}")
        return "usage"
    return request_action(inv, "deploy", args[0].lower(), ref=args[1] if len(args) > 1 else None,
                          force_reason=reason)
