"""Celery task messages, built by hand for the two places that must write one inside a Lua script
or a Redis pipeline: the receiver (dedup + record + enqueue must be one atomic step, so a 2xx is
only ever sent for a delivery that is both recorded and queued) and the scheduler (claim and
send in one round trip per pass).

Publishing through `app.send_task` would cost a separate round trip and ~1 ms of Python per
message, and could not share the receiver's Lua transaction. The price is owning the format:
this is Celery's documented message protocol 2 in kombu's Redis transport envelope, for the
versions pinned in pyproject.toml (celery 5.x, kombu 5.x). tests/test_messages.py publishes a
task through Celery's own public API and compares it field by field with ours, so an upgrade
that changes the format fails the tests instead of losing messages.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson


def task_message(task: str, args: list[Any], queue: str, *, task_id: str | None = None,
                 tag: str | None = None, origin: str = "devops-agent") -> bytes:
    """A protocol-2 message for `task(*args)` in kombu's Redis envelope."""
    task_id = task_id or uuid.uuid4().hex
    body = orjson.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None,
                                    "chord": None}])
    headers: dict[str, Any] = {
        "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None,
        "expires": None, "group": None, "group_index": None, "retries": 0,
        "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": repr(list(args)), "kwargsrepr": "{}", "origin": origin,
        "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    return orjson.dumps({
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": tag or str(uuid.uuid4()),
        },
    })
