"""`/devops lock <env> <reason>` and `/devops unlock <env>`."""

import time

import orjson

from tasks.chatops.core import Invocation, command
from tasks.deploy.gates import access_level, check_access, env_lock_key
from tasks.platform.handlers import CommandHelp

_DELETE_IF_SAME = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
                   "end return 0")


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
    entry = {"user": inv.username, "reason": reason, "at": time.time()}
    if not inv.ctx.redis.set(env_lock_key(inv.project, env), orjson.dumps(entry), nx=True):
        held = orjson.loads(inv.ctx.redis.get(env_lock_key(inv.project, env)) or b"{}")
        if held.get("user") != inv.username:
            inv.reply(f"❌ `{env}` is already locked by @{held.get('user')}: {held.get('reason')}")
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
    key = env_lock_key(inv.project, env)
    raw = inv.ctx.redis.get(key)
    if raw is None:
        inv.reply(f"`{env}` is not locked.")
        return "not locked"
    held = orjson.loads(raw)
    level = access_level(inv.ctx.gitlab, inv.ctx.redis, inv.project, inv.user_id)
    if held.get("user") != inv.username and level < 40:
        inv.reply(f"❌ `{env}` is locked by @{held.get('user')}; only they or a Maintainer can "
                  "unlock it.")
        return "refused"
    # Delete only the lock we looked at: someone may have re-locked it in between.
    if not inv.ctx.redis.eval(_DELETE_IF_SAME, 1, key, raw):
        inv.reply(f"❌ `{env}`'s lock changed while you asked; look at `status` and try again.")
        return "changed"
    inv.audit("succeeded", env=env, was=held)
    inv.reply(f"🔓 `{env}` unlocked.")
    return "unlocked"
