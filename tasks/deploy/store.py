"""Redis persistence for deploys: records, the per-environment lock, the per-deploy mutex.

Keys: `deploy:<id>` (JSON record), `deploy-lock:<project>:<env>` (holder deploy id, with a TTL
so a crashed worker cannot hold an environment forever; every `advance` extends it),
`deploy-advance:<id>` (the step lock: two workers, or a step and a rollback/promote request,
never touch the same deploy's record at once; renewed while its holder lives, so a killed holder
lets go within its TTL), `deploy-last:<project>:<env>` and `deploy-history:...`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator

import redis as redis_lib

from tasks.deploy.model import DeployNotFound, DeployRecord

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

log = logging.getLogger(__name__)


class DeployStore:
    def __init__(self, redis: redis_lib.Redis) -> None:
        self.r = redis
        self._release = redis.register_script(_RELEASE)
        self._keep = redis.register_script(_KEEP)

    @staticmethod
    def lock_key(project: str, env: str) -> str:
        return f"deploy-lock:{project}:{env}"

    # ----- records
    def save(self, rec: DeployRecord) -> None:
        self.r.set(f"deploy:{rec.id}", rec.to_json(), ex=RECORD_TTL)

    def load(self, deploy_id: str) -> DeployRecord:
        raw = self.r.get(f"deploy:{deploy_id}")
        if raw is None:
            raise DeployNotFound(f"no deploy {deploy_id!r}")
        return DeployRecord.from_json(raw)

    def exists(self, deploy_id: str) -> bool:
        return bool(self.r.exists(f"deploy:{deploy_id}"))

    def delete(self, deploy_id: str) -> None:
        self.r.delete(f"deploy:{deploy_id}")

    def finished(self, rec: DeployRecord) -> None:
        pipe = self.r.pipeline()
        pipe.set(f"deploy-last:{rec.project}:{rec.env}", rec.id, ex=RECORD_TTL)
        pipe.lpush(f"deploy-history:{rec.project}:{rec.env}", rec.id)
        pipe.ltrim(f"deploy-history:{rec.project}:{rec.env}", 0, HISTORY - 1)
        pipe.execute()

    def last_id(self, project: str, env: str) -> str | None:
        raw = self.r.get(f"deploy-last:{project}:{env}")
        return _text(raw) if raw else None

    def history(self, project: str, env: str, limit: int = HISTORY) -> list[DeployRecord]:
        """Finished deploys and rollbacks of the environment, newest first."""
        out = []
        for raw_id in self.r.lrange(f"deploy-history:{project}:{env}", 0, limit - 1):
            raw = self.r.get(f"deploy:{_text(raw_id)}")
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
        for key in self.r.scan_iter(match=f"deploy-lock:*:{env}", count=100):
            k = _text(key)
            value = self.r.get(k)
            if value:
                out[k.split(":")[1]] = _text(value)
        return out

    # ----- the per-deploy step lock
    def step_mutex(self, deploy_id: str, ttl: float) -> str | None:
        token = uuid.uuid4().hex
        if self.r.set(f"deploy-advance:{deploy_id}", token, nx=True, px=int(ttl * 1000)):
            return token
        return None

    def step_done(self, deploy_id: str, token: str) -> None:
        self._release(keys=[f"deploy-advance:{deploy_id}"], args=[token])

    @contextlib.contextmanager
    def step_lock(self, deploy_id: str, ttl: float) -> Iterator[bool]:
        """Hold the step lock (yields False if someone else holds it), renewed every ttl/3
        while held: a step may outlast `ttl` (slow API answers), but a holder that died lets
        go at most `ttl` later, so the next worker is not kept waiting for a long fixed TTL."""
        token = self.step_mutex(deploy_id, ttl)
        if token is None:
            yield False
            return
        key, ms = f"deploy-advance:{deploy_id}", max(100, int(ttl * 1000))
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
