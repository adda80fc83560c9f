"""`/devops lock <env> <reason>` and `/devops unlock <env>`.

The manual lock is one of the two reasons an environment is held (tasks/deploy/store.py, `holds`;
the other is a deploy in progress): `/devops status` shows both, deploys and rollbacks by anyone
else are refused while it is held, and `unlock` releases it alone, never a deploy's hold.
"""

import time

from tasks.chatops.core import Invocation, command
from tasks.deploy.gates import access_level, check_access
from tasks.deploy.store import DeployStore
from tasks.platform.handlers import CommandHelp


def _allowed(inv: Invocation, env: str) -> bool:
    access = inv.config.env_access(env)
    if access is None:
        inv.reply(f"❌ unknown environment `{env}`.")
        return False
    gate = check_access(access_level(inv.ctx.gitlab, inv.ctx.redis, inv.project, inv.user_id),
                        access.min_level, env)
    if not gate.passed:
        inv.audit("refused", env=env, gates=[gate.as_dict()])
        inv.reply(f"❌ refused by the **access** gate: {gate.detail}")
    return gate.passed


@command("lock", CommandHelp(
    usage="lock <env> <reason>",
    description="Stop everyone else from deploying to an environment until it is unlocked.",
    examples=('/devops lock production "database migration running"',),
    who="anyone allowed to deploy to the environment"))
def lock(inv: Invocation) -> str:
    if len(inv.args) < 2:
        inv.reply("❌ usage: lock <env> <reason>")
        return "usage"
    env, reason = inv.args[0].lower(), " ".join(inv.args[1:])[:300]
    if not _allowed(inv, env):
        return "refused"
    store = DeployStore(inv.ctx.redis)
    if not store.lock_manually(inv.project, env, inv.username or "", reason, time.time()):
        manual = store.manual_lock(inv.project, env)
        if manual is not None and manual[1].by != (inv.username or ""):
            inv.reply(f"❌ `{env}` is already locked by @{manual[1].by}: {manual[1].reason}")
            return "held"
    inv.audit("succeeded", env=env, reason=reason)
    inv.reply(f"🔒 `{env}` locked: {reason}")
    return "locked"


@command("unlock", CommandHelp(
    usage="unlock <env>",
    description="Release an environment lock (yours, or anyone's if you are a Maintainer).",
    examples=("/devops unlock production",),
    who="the lock's holder, or a Maintainer"))
def unlock(inv: Invocation) -> str:
    if len(inv.args) != 1:
        inv.reply("❌ usage: unlock <env>")
        return "usage"
    env = inv.args[0].lower()
    if not _allowed(inv, env):
        return "refused"
    store = DeployStore(inv.ctx.redis)
    manual = store.manual_lock(inv.project, env)
    if manual is None:
        # a deploy in progress may still hold it: that hold ends with the deploy (or rollback)
        inv.reply(f"`{env}` is not locked.")
        return "not locked"
    raw, held = manual
    level = access_level(inv.ctx.gitlab, inv.ctx.redis, inv.project, inv.user_id)
    if held.by != (inv.username or "") and level < 40:
        inv.reply(f"❌ `{env}` is locked by @{held.by}; only they or a Maintainer can "
                  "unlock it.")
        return "refused"
    # Delete only the lock we looked at: someone may have re-locked it in between.
    if not store.unlock_manually(inv.project, env, raw):
        inv.reply(f"❌ `{env}`'s lock changed while you asked; look at `status` and try again.")
        return "changed"
    inv.audit("succeeded", env=env, was={"user": held.by, "reason": held.reason, "at": held.since})
    inv.reply(f"🔓 `{env}` unlocked.")
    return "unlocked"
