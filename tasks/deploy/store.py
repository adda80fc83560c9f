"""Redis persistence for deploys: records, what holds an environment, the per-deploy mutex.

Every key is under `da:deploy:` (the whole table, and the start-up move of the old keys, are in
tasks/deploy/keys.py). An environment is held for one of two reasons, both read by `holds`:

- a deploy or rollback in progress: `da:deploy:lock:<project>:<env>` names it, with a TTL so a
  crashed worker cannot hold an environment forever (every `advance` extends it);
- a person's `/devops lock`: `da:deploy:manual-lock:<project>:<env>` (who, why, since when),
  without a TTL; only `unlock` releases it, never the end of a deploy.

`da:deploy:step:<id>` is the step lock: two workers, or a step and a rollback/promote request,
never touch the same deploy's record at once; renewed while its holder lives, so a killed holder
lets go within its TTL. `da:deploy:last:` and `da:deploy:history:` list finished records.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import orjson
import redis as redis_lib

from tasks.deploy import keys
from tasks.deploy.model import DeployNotFound, DeployRecord, Hold
from tasks.engine.schedule import Lease
from tasks.platform.store import Busy

# compare-and-delete / compare-and-extend: only the holder may release or extend
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
          "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0")
_KEEP = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0
"""

RECORD_TTL = 30 * 24 * 3600  # keep finished deploys a month for status and post-mortems
HISTORY = 50
# Delete the manual lock only if it is still the one that was read: someone may have unlocked
# and re-locked it in between.
_DELETE_IF_SAME = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                   "return redis.call('DEL', KEYS[1]) end return 0")

log = logging.getLogger(__name__)


class DeployStore:
    def __init__(self, redis: redis_lib.Redis) -> None:
        self.r = redis
        self._release = redis.register_script(_RELEASE)
        self._keep = redis.register_script(_KEEP)

    @staticmethod
    def lock_key(project: str, env: str) -> str:
        return keys.env_lock(project, env)

    # ----- records
    def save(self, rec: DeployRecord) -> None:
        self.r.set(keys.record(rec.id), rec.to_json(), ex=RECORD_TTL)

    def load(self, deploy_id: str) -> DeployRecord:
        raw = self.r.get(keys.record(deploy_id))
        if raw is None:
            raise DeployNotFound(f"no deploy {deploy_id!r}")
        return DeployRecord.from_json(raw)

    def exists(self, deploy_id: str) -> bool:
        return bool(self.r.exists(keys.record(deploy_id)))

    def delete(self, deploy_id: str) -> None:
        self.r.delete(keys.record(deploy_id))

    def finished(self, rec: DeployRecord) -> None:
        pipe = self.r.pipeline()
        pipe.set(keys.last(rec.project, rec.env), rec.id, ex=RECORD_TTL)
        pipe.lpush(keys.history(rec.project, rec.env), rec.id)
        pipe.ltrim(keys.history(rec.project, rec.env), 0, HISTORY - 1)
        pipe.execute()

    def last_id(self, project: str, env: str) -> str | None:
        raw = self.r.get(keys.last(project, env))
        return _text(raw) if raw else None

    def history(self, project: str, env: str, limit: int = HISTORY) -> list[DeployRecord]:
        """Finished deploys and rollbacks of the environment, newest first."""
        out = []
        for raw_id in self.r.lrange(keys.history(project, env), 0, limit - 1):
            raw = self.r.get(keys.record(_text(raw_id)))
            if raw is not None:
                out.append(DeployRecord.from_json(raw))
        return out

    # ----- the environment lock
    def acquire(self, project: str, env: str, deploy_id: str, ttl: float) -> bool:
        return bool(self.r.set(self.lock_key(project, env), deploy_id, nx=True, px=int(ttl * 1000)))

    def holder(self, project: str, env: str) -> str | None:
        raw = self.r.get(self.lock_key(project, env))
        return _text(raw) if raw else None

    def keep(self, project: str, env: str, deploy_id: str, ttl: float) -> int:
        """Extend our lock (1), re-take it if it lapsed and nobody holds it (2), or 0: taken."""
        return int(self._keep(keys=[self.lock_key(project, env)], args=[deploy_id, int(ttl * 1000)]))

    def release(self, project: str, env: str, deploy_id: str) -> None:
        self._release(keys=[self.lock_key(project, env)], args=[deploy_id])

    def holders_for_env(self, env: str) -> dict[str, str]:
        """project -> holder id, for every project locking `env` (few keys: SCAN is fine)."""
        out: dict[str, str] = {}
        prefix = keys.env_lock("", "")[:-2]  # `da:deploy:lock`
        for key in self.r.scan_iter(match=f"{prefix}:*:{env}", count=100):
            k = _text(key)
            value = self.r.get(k)
            if value:
                out[k[len(prefix) + 1:].rsplit(":", 1)[0]] = _text(value)
        return out

    # ----- the manual lock (`/devops lock`)
    def lock_manually(self, project: str | int, env: str, user: str, reason: str,
                      at: float) -> bool:
        """Take the manual lock; False if someone (maybe `user`) holds it already."""
        entry = {"user": user, "reason": reason, "at": at}
        return bool(self.r.set(keys.manual_lock(project, env), orjson.dumps(entry), nx=True))

    def manual_lock(self, project: str | int, env: str) -> tuple[bytes, Hold] | None:
        """The manual lock as stored (for `unlock_manually`) and as a Hold, or None."""
        raw = self.r.get(keys.manual_lock(project, env))
        if raw is None:
            return None
        held = orjson.loads(raw)
        raw = raw if isinstance(raw, bytes) else raw.encode()
        return raw, Hold("manual", by=str(held.get("user") or ""), since=float(held.get("at") or 0),
                         reason=str(held.get("reason") or ""))

    def unlock_manually(self, project: str | int, env: str, seen: bytes) -> bool:
        """Release the manual lock if it still is `seen`; a deploy's lock is never touched."""
        return bool(self.r.eval(_DELETE_IF_SAME, 1, keys.manual_lock(project, env), seen))

    def holds(self, project: str | int, env: str) -> list[Hold]:
        """Why the environment is held: its manual lock, then the deploy holding it, if any."""
        out = []
        manual = self.manual_lock(project, env)
        if manual is not None:
            out.append(manual[1])
        holder = self.holder(str(project), env)
        if holder:
            try:
                rec = self.load(holder)
            except DeployNotFound:  # a lock whose record expired: still a hold, until its TTL
                out.append(Hold("deploy", by="?", since=0.0, deploy_id=holder))
            else:
                out.append(Hold("deploy", by=rec.requested_by, since=rec.created_at,
                                reason=rec.reason, deploy_id=rec.id, deploy_kind=rec.kind,
                                phase=rec.phase, status=rec.status))
        return out

    # ----- what one issue shows of an environment
    @contextlib.contextmanager
    def reply_lock(self, project: str | int, kind: str, iid: int, env: str, *, ttl: float = 10.0,
                   wait: float = 30.0) -> Iterator[None]:
        """Serialises what one issue or MR shows about one environment (its replies' state and
        its status label): news written late never overwrites a verdict written meanwhile.
        Renewed while held, like every lease; raises Busy (retried later) after `wait`."""
        lease = Lease(self.r, "", ttl)
        lease.key = keys.reply_lock(project, kind, iid, env)  # deploy state: under da:deploy:
        deadline = time.monotonic() + wait
        while not lease.acquire():
            if time.monotonic() > deadline:
                raise Busy(f"the replies of {kind} {iid} about {env} are busy")
            time.sleep(0.05)
        try:
            yield
        finally:
            lease.release()

    def claim_postmortem(self, deploy_id: str) -> bool:
        """True once per deploy: the post-mortem is filed once, however often it is reported."""
        return bool(self.r.set(keys.postmortem_claim(deploy_id), 1, nx=True, ex=RECORD_TTL))

    def unclaim_postmortem(self, deploy_id: str) -> None:
        self.r.delete(keys.postmortem_claim(deploy_id))

    # ----- the per-deploy step lock
    def step_mutex(self, deploy_id: str, ttl: float) -> str | None:
        token = uuid.uuid4().hex
        if self.r.set(keys.step(deploy_id), token, nx=True, px=int(ttl * 1000)):
            return token
        return None

    def step_done(self, deploy_id: str, token: str) -> None:
        self._release(keys=[keys.step(deploy_id)], args=[token])

    @contextlib.contextmanager
    def step_lock(self, deploy_id: str, ttl: float) -> Iterator[bool]:
        """Hold the step lock (yields False if someone else holds it), renewed every ttl/3
        while held: a step may outlast `ttl` (slow API answers), but a holder that died lets
        go at most `ttl` later, so the next worker is not kept waiting for a long fixed TTL."""
        token = self.step_mutex(deploy_id, ttl)
        if token is None:
            yield False
            return
        key, ms = keys.step(deploy_id), max(100, int(ttl * 1000))
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ms / 3000):
                try:
                    self.r.eval(_RENEW, 1, key, token, ms)
                except Exception:
                    log.warning("step lock renewal failed for %s", deploy_id, exc_info=True)

        thread = threading.Thread(target=renew, daemon=True, name="deploy-step-lock")
        thread.start()
        try:
            yield True
        finally:
            stop.set()
            thread.join(timeout=2)
            self.step_done(deploy_id, token)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
