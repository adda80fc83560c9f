"""Every Redis key of deploy state, under one prefix, and the start-up move of the old ones.

All deploy state lives under `da:deploy:` (the service's other state is under `da:` too, see
tasks/platform/store.py), so one `SCAN da:deploy:*` shows all of it:

- `da:deploy:record:<id>`: a deploy's or rollback's record (JSON `DeployRecord`), a month;
- `da:deploy:lock:<project>:<env>`: the deploy holding the environment (its id), with a TTL
  that each step renews;
- `da:deploy:manual-lock:<project>:<env>`: `/devops lock`, `{"user", "reason", "at"}`, no TTL;
- `da:deploy:step:<id>`: the step lock, one step (or rollback/promote write) at a time;
- `da:deploy:last:<project>:<env>`, `da:deploy:history:<project>:<env>`: the last finished
  record's id, and the finished ones' ids, newest first (50);
- `da:deploy:context:<handle>`: a request's reply context (where to answer, who asked);
- `da:deploy:request:<request id>`: the deploy a command or label event started (or
  `starting`): submitting one request twice deploys once;
- `da:deploy:postmortem:<id>`: the post-mortem issue's iid; `da:deploy:postmortem-claim:<id>`
  files it once;
- `da:deploy:reply-lock:<project>:<kind>:<iid>:<env>`: serialises what one issue or MR shows of
  an environment (its replies and its status label);
- `da:deploy:gitlab:<project>:<env>`: GitLab's last Deployment hook (history, not what runs).

Releases before this one wrote `deploy:<id>`, `deploy-lock:`, `deploy-last:`, `deploy-history:`,
`deploy-advance:`, `da:deploy-ctx:`, `da:deploy-by-request:`, `da:deploy-postmortem:`,
`da:once:postmortem:`, `da:envlock:` and `da:deployed:`. `migrate_legacy_keys` renames them at
worker start-up (tasks/cli/serve.py), before the worker takes any task, so deploys in flight,
their locks and their replies carry on: a rename keeps the value and the TTL, and no value names
a key. It is idempotent and safe from several workers at once (each rename is one Lua step), so
every start runs it; a worker of the old release still running meanwhile would write old keys
again, which the next start moves, so stop the old workers before starting the new ones.
"""

from __future__ import annotations

import logging
from typing import Any

PREFIX = "da:deploy:"

log = logging.getLogger(__name__)


def record(deploy_id: str) -> str:
    return f"{PREFIX}record:{deploy_id}"


def env_lock(project: str | int, env: str) -> str:
    return f"{PREFIX}lock:{project}:{env}"


def manual_lock(project: str | int, env: str) -> str:
    return f"{PREFIX}manual-lock:{project}:{env}"


def step(deploy_id: str) -> str:
    return f"{PREFIX}step:{deploy_id}"


def last(project: str | int, env: str) -> str:
    return f"{PREFIX}last:{project}:{env}"


def history(project: str | int, env: str) -> str:
    return f"{PREFIX}history:{project}:{env}"


def context(handle: str) -> str:
    return f"{PREFIX}context:{handle}"


def request(request_id: str) -> str:
    return f"{PREFIX}request:{request_id}"


def postmortem(deploy_id: str) -> str:
    return f"{PREFIX}postmortem:{deploy_id}"


def postmortem_claim(deploy_id: str) -> str:
    return f"{PREFIX}postmortem-claim:{deploy_id}"


def reply_lock(project: str | int, kind: str, iid: int, env: str) -> str:
    return f"{PREFIX}reply-lock:{project}:{kind}:{iid}:{env}"


def gitlab_deployment(project: str | int, env: str) -> str:
    return f"{PREFIX}gitlab:{project}:{env}"


# old prefix -> new prefix; the rest of the key (ids, project:env) is the same
LEGACY = (
    ("deploy:", PREFIX + "record:"),
    ("deploy-lock:", PREFIX + "lock:"),
    ("deploy-advance:", PREFIX + "step:"),
    ("deploy-last:", PREFIX + "last:"),
    ("deploy-history:", PREFIX + "history:"),
    ("da:deploy-ctx:", PREFIX + "context:"),
    ("da:deploy-by-request:", PREFIX + "request:"),
    ("da:deploy-postmortem:", PREFIX + "postmortem:"),
    ("da:once:postmortem:", PREFIX + "postmortem-claim:"),
    ("da:envlock:", PREFIX + "manual-lock:"),
    ("da:deployed:", PREFIX + "gitlab:"),
)

# Rename unless the new key exists: a new key was written by this release and is newer than
# any old one of the same name, which is then left in place (and logged) rather than lost.
_MOVE = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
if redis.call('exists', KEYS[2]) == 1 then return -1 end
redis.call('rename', KEYS[1], KEYS[2])
return 1
"""


def migrate_legacy_keys(redis: Any) -> int:
    """Move every key of the old layout to its `da:deploy:` name; returns how many moved."""
    move = redis.register_script(_MOVE)
    moved = 0
    for old, new in LEGACY:
        for raw in redis.scan_iter(match=old + "*", count=500):
            key = raw.decode() if isinstance(raw, bytes) else raw
            if not key.startswith(old):  # SCAN's glob also matches past the literal prefix
                continue
            target = new + key[len(old):]
            done = int(move(keys=[key, target]))
            if done == 1:
                moved += 1
            elif done == -1:
                log.warning("deploy key %s was not moved: %s already exists", key, target)
    if moved:
        log.info("moved %d deploy keys to the %s prefix", moved, PREFIX)
    return moved
