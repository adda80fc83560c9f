"""`/devops status [env]`: what runs where, locks and freezes."""

import datetime as dt

import orjson

from tasks.chatops.core import Invocation, command
from tasks.chatops.gates import env_lock_key, freeze_gate
from tasks.handlers import CommandHelp


@command("status", CommandHelp(
    usage="status [env]",
    description="Show what runs in each environment, who holds a lock, and whether a deploy "
                "freeze is active.",
    examples=("/devops status", "/devops status production"), who="anyone who can comment"))
def run(inv: Invocation) -> str:
    envs = [inv.args[0].lower()] if inv.args else sorted(inv.config.access)
    freeze = freeze_gate(inv.ctx.gitlab.freeze_periods(inv.project),
                         dt.datetime.now(dt.timezone.utc))
    lines = ["| Environment | Running | Lock |", "|---|---|---|"]
    for env in envs:
        deployed = inv.ctx.redis.hgetall(f"da:deployed:{inv.project}:{env}")
        running = (f"`{deployed[b'ref'].decode()}` ({deployed[b'sha'].decode()[:8]}), "
                   f"{deployed[b'status'].decode()}" if deployed else "unknown")
        raw = inv.ctx.redis.get(env_lock_key(inv.project, env))
        lock = "—"
        if raw:
            held = orjson.loads(raw)
            lock = f"@{held['user']}: {held['reason']}"
        lines.append(f"| {env} | {running} | {lock} |")
    lines += ["", ("🧊 " if not freeze.passed else "") + freeze.detail]
    inv.reply("\n".join(lines))
    return "status"
