"""State that makes side effects idempotent: retry budgets, job rows, comment ids, history, locks.

Everything lives in Redis under `da:` so that a redelivered webhook, a retried task or a second
worker sees what the first one did. The check-and-act steps two workers can race on (retry
claims, recording a ref's newest pipeline) are Lua scripts; the rest are single commands.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import orjson
import redis

from tasks.engine.schedule import Lease

DAY = 86400
MAX_FLAKY = 500  # job or test names per project and kind
STATE_TTL = 30 * DAY

# KEYS: retried-mark for this job id, attempts counter for (pipeline, job name)
# ARGV: budget, ttl. Returns [attempt, fresh]: fresh=1 when this call claimed a new attempt,
# 0 when this job id was already retried (attempt = the one it got), attempt=0 when exhausted.
_CLAIM_RETRY = """
local prior = redis.call('GET', KEYS[1])
if prior then return {tonumber(prior), 0} end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used >= tonumber(ARGV[1]) then return {0, 0} end
local attempt = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], attempt, 'EX', ARGV[2])
return {attempt, 1}
"""
_RELEASE_RETRY = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('DECR', KEYS[2])
  return 1
end
return 0
"""
# Record a pipeline of a ref unless a newer one is recorded: one step, so two workers finishing
# two pipelines of one ref cannot both read "none newer" and the older overwrite the newer.
# KEYS: ref hash. ARGV: pipeline id, info JSON, ttl. Returns 1 recorded, 0 an older pipeline.
_RECORD_PIPELINE = """
local newest = redis.call('HGET', KEYS[1], 'pipeline')
if newest and tonumber(newest) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'pipeline', ARGV[1], 'info', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def redis_client(url: str) -> redis.Redis:
    """A client for the service's Redis (the worker's, the CLI's), with its timeouts."""
    url = url.replace("redis+socket://", "unix://")
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5,
                                health_check_interval=30)


class Busy(Exception):
    """A lock stayed held past the wait; the task should be retried later."""

    error_kind = "transient"


class Store:
    def __init__(self, client: redis.Redis) -> None:
        # redis-py types replies as bytes | str (decode_responses decides); ours are bytes.
        self.r: Any = client
        self._claim = client.register_script(_CLAIM_RETRY)
        self._release = client.register_script(_RELEASE_RETRY)
        self._record_pipeline = client.register_script(_RECORD_PIPELINE)

    # -- retry budgets -------------------------------------------------------------------------
    def claim_retry(self, project: int, pipeline: int, job_name: str, job_id: int,
                    budget: int) -> tuple[int, bool]:
        """(attempt, fresh). A job id is retried at most once however often we hear of its
        failure; each (pipeline, job name) gets `budget` retries across the new ids GitLab gives."""
        attempt, fresh = self._claim(
            keys=[f"da:retried:{project}:{job_id}", self._attempts_key(project, pipeline, job_name)],
            args=[budget, STATE_TTL])
        return int(attempt), bool(fresh)

    def release_retry(self, project: int, pipeline: int, job_name: str, job_id: int,
                      attempt: int) -> None:
        """Give an attempt back when GitLab refused the retry call."""
        self._release(keys=[f"da:retried:{project}:{job_id}",
                            self._attempts_key(project, pipeline, job_name)], args=[attempt])

    def attempts_used(self, project: int, pipeline: int, job_name: str) -> int:
        return int(self.r.get(self._attempts_key(project, pipeline, job_name)) or 0)

    @staticmethod
    def _attempts_key(project: int, pipeline: int, job_name: str) -> str:
        return f"da:attempts:{project}:{pipeline}:{job_name}"

    # -- per-pipeline job rows (what the comment shows) ----------------------------------------
    def put_job_row(self, project: int, pipeline: int, row: dict[str, Any]) -> None:
        key = f"da:jobs:{project}:{pipeline}"
        self.r.hset(key, row["name"], orjson.dumps(row))
        self.r.expire(key, STATE_TTL)

    def job_rows(self, project: int, pipeline: int) -> list[dict[str, Any]]:
        raw = self.r.hgetall(f"da:jobs:{project}:{pipeline}")
        return sorted((orjson.loads(v) for v in raw.values()),
                      key=lambda row: (row.get("stage", ""), row["name"]))

    # -- pipelines per ref: which one is latest, what we said about it --------------------------
    def record_pipeline(self, project: int, ref: str, pipeline: int, info: dict[str, Any]) -> bool:
        """Remember a pipeline of `ref`; False when a newer pipeline was already recorded."""
        return bool(self._record_pipeline(keys=[f"da:ref:{project}:{ref}"],
                                           args=[pipeline, orjson.dumps(info), STATE_TTL]))

    def ref_state(self, project: int, ref: str) -> dict[str, Any] | None:
        raw = self.r.hgetall(f"da:ref:{project}:{ref}")
        if not raw:
            return None
        return {"pipeline": int(raw[b"pipeline"]), **orjson.loads(raw.get(b"info", b"{}"))}

    # -- sticky comments -----------------------------------------------------------------------
    def comment(self, key: str) -> tuple[int, str] | None:
        raw = self.r.hmget(f"da:comment:{key}", "note_id", "digest")
        if raw[0] is None:
            return None
        return int(raw[0]), (raw[1] or b"").decode()

    def set_comment(self, key: str, note_id: int, digest: str) -> None:
        self.r.hset(f"da:comment:{key}", mapping={"note_id": note_id, "digest": digest})
        self.r.expire(f"da:comment:{key}", 90 * DAY)

    # -- flaky history -------------------------------------------------------------------------
    def record_failed_sha(self, project: int, sha: str, names: list[str], kind: str) -> None:
        if not names:
            return
        key = f"da:failed-{kind}:{project}:{sha}"
        self.r.sadd(key, *names)
        self.r.expire(key, 7 * DAY)

    def failed_on_sha(self, project: int, sha: str, kind: str) -> set[str]:
        return {m.decode() for m in self.r.smembers(f"da:failed-{kind}:{project}:{sha}")}

    def mark_flaky(self, project: int, names: list[str], kind: str, sha: str) -> None:
        key = f"da:flaky-{kind}:{project}"
        now = time.time()
        for name in names[:MAX_FLAKY]:
            # once per (name, sha): a redelivered success must not count twice
            if self.r.set(f"da:flaky-seen:{project}:{kind}:{name}:{sha}", 1, nx=True, ex=STATE_TTL):
                self.r.hincrby(key, name, 1)
                self.r.hset(key + ":last", name, now)
        self.r.expire(key, 90 * DAY)
        self.r.expire(key + ":last", 90 * DAY)
        if self.r.hlen(key) > MAX_FLAKY:
            # Keep the names seen flaky most recently.
            last = sorted(((float(v), k) for k, v in self.r.hgetall(key + ":last").items()),
                          reverse=True)
            stale = [k for _, k in last[MAX_FLAKY:]]
            if stale:
                self.r.hdel(key, *stale)
                self.r.hdel(key + ":last", *stale)

    def flaky(self, project: int, kind: str) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.r.hgetall(f"da:flaky-{kind}:{project}").items()}

    # -- circuit breaker per rule --------------------------------------------------------------
    def breaker_hit(self, rule: str, project: int, window: int) -> int:
        """Record that `rule` fired in `project`; return in how many projects within `window`."""
        key = f"da:breaker:{rule}"
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(key, {str(project): now})
        pipe.zremrangebyscore(key, "-inf", now - window)
        pipe.zcard(key)
        pipe.expire(key, window * 2)
        return int(pipe.execute()[2])

    def breaker_projects(self, rule: str) -> list[str]:
        return [m.decode() for m in self.r.zrange(f"da:breaker:{rule}", 0, -1)]

    # -- mappings and locks --------------------------------------------------------------------
    def get_map(self, key: str) -> str | None:
        raw = self.r.get(f"da:map:{key}")
        return raw.decode() if raw else None

    def set_map(self, key: str, value: str, ttl: int = 90 * DAY) -> None:
        self.r.set(f"da:map:{key}", value, ex=ttl)

    def once(self, key: str, ttl: int = STATE_TTL) -> bool:
        """True the first time `key` is seen: guards a side effect against redelivery."""
        return bool(self.r.set(f"da:once:{key}", 1, nx=True, ex=ttl))

    def forget(self, key: str) -> None:
        self.r.delete(f"da:once:{key}")

    def seen(self, key: str) -> bool:
        """Whether `mark(key)` was called (and has not expired)."""
        return bool(self.r.exists(f"da:once:{key}"))

    def mark(self, key: str, ttl: int = STATE_TTL) -> None:
        self.r.set(f"da:once:{key}", 1, ex=ttl)

    @contextlib.contextmanager
    def lock(self, name: str, ttl: float = 5.0, wait: float = 10.0) -> Iterator[None]:
        """Mutual exclusion around work that calls GitLab (comment, issue and job retry
        creation): renewed while its holder lives, so a holder that was killed lets go within
        `ttl`, however long the calls inside take with their retries."""

        lease = Lease(self.r, "lock:" + name, ttl)
        deadline = time.monotonic() + wait
        while not lease.acquire():
            if time.monotonic() > deadline:
                raise Busy(f"lock {name} is held")
            time.sleep(0.05)
        try:
            yield
        finally:
            lease.release()
