"""`devops-agent replay --dry-run`: a payload through the worker's handlers in this process.

A module of its own so that sending a payload (replay.py) loads none of the worker's code.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import orjson

from tasks.config.settings import ConfigError, load_settings
from tasks.intake.kinds import HEADER_FOR_OBJECT_KIND, kind_of
from tasks.platform.redis_server import RedisServer
from tasks.wiring.runtime import build_runtime
from tasks.worker.context import delivery_decisions
from tasks.worker.dispatch import process_delivery


def dry_run(body: bytes, event: str | None) -> int:
    """Run the payload through the handlers in this process, on a throwaway Redis, with every
    write to GitLab suppressed; print each decision as one JSON line."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        print(f"devops-agent: payload is not valid JSON: {exc.msg}", file=sys.stderr)
        return 2
    object_kind = str(payload.get("object_kind")) if isinstance(payload, dict) else ""
    event = event or HEADER_FOR_OBJECT_KIND.get(object_kind) or ""
    kind = kind_of(event)
    if kind is None:
        print(f"devops-agent: cannot tell a handled event kind (got {event!r}); pass --event",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="devops-agent-dry-run-") as tmp:
        server = RedisServer(Path(tmp), appendonly=False).start()
        try:
            env = {**os.environ, "REDIS_URL": server.client_url(), "DRY_RUN": "1"}
            settings = load_settings(env, require_secret=False)
            rt = build_runtime(settings)
            accepted = rt.inbox.accept(event=event, kind=kind, body=body, idempotency_key=None)
            outcome = process_delivery(rt, accepted.delivery_id)
            for decision in delivery_decisions(rt.redis, accepted.delivery_id):
                print(orjson.dumps(decision, default=str).decode())
            print(orjson.dumps({"outcome": outcome}).decode())
        except (ConfigError, ValueError) as exc:
            print(f"devops-agent: {exc}", file=sys.stderr)
            return 2
        finally:
            server.stop()
    return 0
