"""`/devops rollback <env> [revision]`"""

from tasks.chatops.core import Invocation, command, request_action, split_force
from tasks.platform.handlers import CommandHelp


@command("rollback", CommandHelp(
    usage='rollback <env> [revision] [--force "reason"]',
    description="Roll an environment back to the previous revision, or to a named one "
                "(Kubernetes rollout revision; `status <env>` lists what each one ran). Sent "
                "while a deploy runs, it aborts and undoes that deploy. A revision whose deploy "
                "failed its checks there is refused unless --force gives a reason.",
    examples=("/devops rollback production", "/devops rollback staging 12"),
    who="per environment, like deploy"))
def run(inv: Invocation) -> str:
    args, reason, error = split_force(inv.args)
    if error or not args or len(args) > 2:
        inv.reply(f"❌ {error or 'usage: rollback <env> [revision]'}")
        return "usage"
    return request_action(inv, "rollback", args[0].lower(),
                          revision=args[1] if len(args) > 1 else None, force_reason=reason)
