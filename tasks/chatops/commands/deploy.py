"""`/devops deploy <env> [ref] [--force "reason"]`"""

from tasks.chatops.core import Invocation, command, request_action, split_force
from tasks.platform.handlers import CommandHelp


@command("deploy", CommandHelp(
    usage='deploy <env> [ref] [--force "reason"] [--dry-run]',
    description="Deploy the ref (default: the merge request's source branch, or the default "
                "branch) to an environment, after the environment's gates; exactly the SHA the "
                "gates checked ships. --dry-run answers with the checklist and deploys nothing.",
    examples=("/devops deploy staging", '/devops deploy production v1.4.2',
              "/devops deploy production --dry-run"),
    who="per environment (default: staging Developer, production Maintainer)"))
def run(inv: Invocation) -> str:
    args, reason, error = split_force(inv.args)
    dry_run = "--dry-run" in args
    args = tuple(a for a in args if a != "--dry-run")
    if error or not args or len(args) > 2:
        inv.reply(f"❌ {error or 'usage: deploy <env> [ref] [--dry-run]'}")
        return "usage"
    return request_action(inv, "deploy", args[0].lower(), ref=args[1] if len(args) > 1 else None,
                          force_reason=reason, dry_run=dry_run)
