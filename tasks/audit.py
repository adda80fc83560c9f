"""Audit trail: every command and label trigger — who, what, where, when, gates, outcome."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

KEY = "da:audit"
KEEP = 50_000


def record(redis: Any, **entry: Any) -> dict[str, Any]:
    entry = {"id": uuid.uuid4().hex[:12], "at": round(time.time(), 3), **entry}
    pipe = redis.pipeline(transaction=False)
    pipe.zadd(KEY, {orjson.dumps(entry, default=str): entry["at"]})
    pipe.zremrangebyrank(KEY, 0, -KEEP - 1)
    pipe.execute()
    return entry


def query(redis: Any, *, project: str | None = None, since: float | None = None,
          limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; `project` matches the id or the full path."""
    out = []
    for raw in redis.zrevrangebyscore(KEY, "+inf", since if since is not None else "-inf"):
        entry = orjson.loads(raw)
        if project is not None and project not in (str(entry.get("project")),
                                                   str(entry.get("project_path"))):
            continue
        out.append(entry)
        if len(out) >= limit:
            break
    return out
