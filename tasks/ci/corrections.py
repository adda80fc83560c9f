"""The learning loop's memory: people's corrections and the failures no rule knew.

* A correction (`/devops classify <category>`, or swapping the `ci-failure:` label) is kept per
  failure signature, so the next failure with the same signature gets the corrected category
  (the classifier's `learned` layer), and as a labelled example (its error lines, the category
  the classifier gave and the one the person gave) for `devops-agent rules suggest` and
  `rules backtest`.
* Every `unknown` failure is kept as an example too: clusters of them are the rules to write next.

All of it is bounded: examples are capped per kind and expire, corrections expire after a year.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from tasks.ci.rules.classifier import Correction

CORRECTION_TTL = 365 * 86400
EXAMPLE_TTL = 90 * 86400
MAX_EXAMPLES = 5000
MAX_LINES = 10
MAX_LINE_CHARS = 400
KINDS = ("corrected", "unknown")


def _key(kind: str) -> str:
    return f"da:examples:{kind}"


class Corrections:
    """Redis-backed corrections and examples; `correction()` is what the Classifier asks."""

    def __init__(self, redis: Any, clock: Any = time.time) -> None:
        self.r = redis
        self.clock = clock

    def correction(self, signature: str) -> Correction | None:
        raw = self.r.hgetall(f"da:correction:{signature}")
        if not raw:
            return None
        return Correction(category=raw[b"category"].decode(), by=raw.get(b"by", b"?").decode(),
                          where=raw.get(b"where", b"").decode())

    def correct(self, signature: str, *, category: str, by: str, where: str,
                example: dict[str, Any]) -> None:
        """Remember that failures with `signature` are `category` (said by `by`, at `where`)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(f"da:correction:{signature}", mapping={
            "category": category, "by": by, "where": where, "at": repr(self.clock())})
        pipe.expire(f"da:correction:{signature}", CORRECTION_TTL)
        pipe.execute()
        self._keep("corrected", signature, {**example, "category": category, "by": by,
                                             "where": where})
        # The same failure is no longer one nobody knows.
        member = f"{signature}:{example.get('job', '')}"
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(_key("unknown"), member)
        pipe.hdel(_key("unknown") + ":data", member)
        pipe.execute()

    def unknown(self, signature: str, example: dict[str, Any]) -> None:
        """A failure no rule or context explained."""
        self._keep("unknown", signature, example)

    def _keep(self, kind: str, signature: str, example: dict[str, Any]) -> None:
        entry = {**example, "signature": signature, "at": round(self.clock(), 3)}
        entry["lines"] = [str(line)[:MAX_LINE_CHARS] for line in (entry.get("lines") or [])][
            :MAX_LINES]
        key = _key(kind)
        now = self.clock()
        pipe = self.r.pipeline(transaction=True)
        # One example per signature and job: a redelivered failure is not counted twice.
        pipe.hset(key + ":data", f"{signature}:{entry.get('job', '')}", orjson.dumps(entry))
        pipe.zadd(key, {f"{signature}:{entry.get('job', '')}": now})
        pipe.execute()
        self._trim(kind)

    def _trim(self, kind: str) -> None:
        key = _key(kind)
        now = self.clock()
        stale = self.r.zrangebyscore(key, "-inf", now - EXAMPLE_TTL)
        over = self.r.zcard(key) - MAX_EXAMPLES
        if over > 0:
            stale += self.r.zrange(key, 0, over - 1)
        if stale:
            pipe = self.r.pipeline(transaction=True)
            pipe.zrem(key, *stale)
            pipe.hdel(key + ":data", *stale)
            pipe.execute()
        self.r.expire(key, EXAMPLE_TTL)
        self.r.expire(key + ":data", EXAMPLE_TTL)

    def examples(self, kind: str, limit: int = MAX_EXAMPLES) -> Iterator[dict[str, Any]]:
        """Newest first."""
        key = _key(kind)
        members = self.r.zrevrange(key, 0, limit - 1)
        for start in range(0, len(members), 500):
            batch = members[start:start + 500]
            for raw in self.r.hmget(key + ":data", batch):
                if raw is not None:
                    yield orjson.loads(raw)
