"""Audit trail: every command and label trigger — who, what, where, when, gates, outcome.

Entries live in one sorted set scored by time, plus one per project (by id and by path) so a
project's trail is read by score range, never by parsing everything. Each set is capped by count
and by age.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from typing import Any

import orjson

KEY = "da:audit"
KEEP = 50_000
KEEP_PER_PROJECT = 5_000
MAX_AGE = 365 * 86400


def project_key(project: Any) -> str:
    return f"{KEY}:p:{project}"


def record(redis: Any, **entry: Any) -> dict[str, Any]:
    entry = {"id": uuid.uuid4().hex[:12], "at": round(time.time(), 3), **entry}
    raw = orjson.dumps(entry, default=str)
    keys = [KEY] + [project_key(p) for p in {entry.get("project"), entry.get("project_path")}
                    if p not in (None, "")]
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.zadd(key, {raw: entry["at"]})
        pipe.zremrangebyrank(key, 0, -(KEEP if key == KEY else KEEP_PER_PROJECT) - 1)
        pipe.zremrangebyscore(key, "-inf", entry["at"] - MAX_AGE)
        if key != KEY:
            pipe.expire(key, MAX_AGE)
    pipe.execute()
    return entry


def query(redis: Any, *, project: str | None = None, since: float | None = None,
          limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; `project` matches the id or the full path. Reads at most `limit` entries."""
    key = KEY if project is None else project_key(project)
    raws = redis.zrevrangebyscore(key, "+inf", since if since is not None else "-inf",
                                  start=0, num=max(0, limit))
    return [orjson.loads(raw) for raw in raws]


_RELATIVE = re.compile(r"^(\d+)([smhd])$")


def parse_since(raw: str | None) -> float | None:
    """`30m`, `2h`, `7d`, a Unix time, or an ISO date/time; ValueError otherwise."""
    if raw is None:
        return None
    m = _RELATIVE.match(raw.strip())
    if m:
        return time.time() - int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"--since: expected 30m, 2h, 7d, a Unix time or an ISO date, not {raw!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
