"""Similar failures and broken trunk: where else a failure signature was seen, and whether it
already fails on the default branch (what PyTorch's Dr. CI tells GitHub users).

A signature (tasks/ci/rules/signature.py) is the deciding rule plus the normalised first evidence
line. For each one we keep, for 7 days and capped: the jobs it failed (project, pipeline, job),
the projects, and the jobs that then passed on retry. Per project we keep the signatures failing
on the default branch since its last green pipeline, so an MR author reads "also failing on
`main` since pipeline #N: not caused by this change" instead of debugging someone else's break.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

WINDOW = 7 * 86400
MAX_OCCURRENCES = 1000
TRUNK_TTL = 30 * 86400
MAX_TRUNK_SIGNATURES = 500

# KEYS: seen zset, projects zset. ARGV: member, project, now, window, cap, ttl
_RECORD = """
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3] - ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[5]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3] - ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[5]) - 1)
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
"""


@dataclass(frozen=True)
class Similar:
    seen: int  # failed jobs with this signature in the window (this one included)
    projects: int
    passed_on_retry: int
    trunk_since: dict[str, Any] | None  # {"pipeline": N, "ref": "main", "at": t} or None

    def sentence(self, default_branch: str | None) -> str:
        parts = []
        if self.trunk_since:
            # Git allows backticks in branch names; they must not end our code span.
            branch = str(self.trunk_since.get("ref") or default_branch).replace("`", "'")[:80]
            parts.append(f"also failing on `{branch}` "
                         f"since pipeline #{self.trunk_since['pipeline']}: not caused by this "
                         "change")
        if self.seen > 1:
            where = f" in {self.projects} projects" if self.projects > 1 else ""
            parts.append(f"seen {self.seen} times{where} in the last 7 days")
        if self.passed_on_retry:
            parts.append(f"passed on retry {self.passed_on_retry} time"
                         f"{'s' if self.passed_on_retry != 1 else ''} (flaky)")
        return "; ".join(parts)


class FailureHistory:
    def __init__(self, redis: Any, clock: Any = time.time) -> None:
        self.r = redis
        self.clock = clock
        self._record = redis.register_script(_RECORD)

    @staticmethod
    def _key(sig: str, what: str) -> str:
        return f"da:sig:{sig}:{what}"

    def record(self, sig: str, *, project: int, pipeline: int, job: int, sha: str,
               job_name: str, ref: str, default_branch: str | None) -> None:
        """A failed job with this signature; idempotent for the same job."""
        now = self.clock()
        self._record(keys=[self._key(sig, "seen"), self._key(sig, "projects")],
                     args=[f"{project}:{pipeline}:{job}", project, now, WINDOW,
                           MAX_OCCURRENCES, WINDOW + 86400])
        pipe = self.r.pipeline(transaction=False)
        # Which signature a job name failed with on this commit: a later pass on retry counts.
        pipe.set(f"da:failed-sig:{project}:{sha}:{job_name}", sig, ex=WINDOW)
        if default_branch and ref == default_branch:
            key = f"da:trunk-failing:{project}"
            pipe.hsetnx(key, sig, orjson.dumps({"pipeline": pipeline, "ref": ref, "at": now}))
            pipe.expire(key, TRUNK_TTL)
        pipe.execute()
        if default_branch and ref == default_branch and \
                self.r.hlen(f"da:trunk-failing:{project}") > MAX_TRUNK_SIGNATURES:
            self.r.hdel(f"da:trunk-failing:{project}",
                        *self.r.hkeys(f"da:trunk-failing:{project}")[:100])

    def passed_on_retry(self, *, project: int, sha: str, job_name: str) -> str | None:
        """A job that failed on this commit passed on a retry; returns its signature."""
        raw = self.r.get(f"da:failed-sig:{project}:{sha}:{job_name}")
        if raw is None:
            return None
        sig = raw.decode()
        now = self.clock()
        key = self._key(sig, "flaky")
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(key, {f"{project}:{sha}:{job_name}": now})
        pipe.zremrangebyscore(key, "-inf", now - WINDOW)
        pipe.zremrangebyrank(key, 0, -MAX_OCCURRENCES - 1)
        pipe.expire(key, WINDOW + 86400)
        pipe.execute()
        return sig

    def trunk_passed(self, project: int) -> None:
        """The default branch is green again: nothing fails there any more."""
        self.r.delete(f"da:trunk-failing:{project}")

    def similar(self, sig: str, *, project: int, ref: str,
                default_branch: str | None) -> Similar:
        now = self.clock()
        since = now - WINDOW
        pipe = self.r.pipeline(transaction=False)
        pipe.zcount(self._key(sig, "seen"), since, "+inf")
        pipe.zcount(self._key(sig, "projects"), since, "+inf")
        pipe.zcount(self._key(sig, "flaky"), since, "+inf")
        pipe.hget(f"da:trunk-failing:{project}", sig)
        seen, projects, flaky, trunk = pipe.execute()
        trunk_since = orjson.loads(trunk) if trunk and ref != default_branch else None
        return Similar(int(seen), int(projects), int(flaky), trunk_since)
