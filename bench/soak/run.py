#!/usr/bin/env python3
"""Soak: N deliveries through the real receiver and worker; does Redis memory come back down?

Starts a redis-server (the embedded server's settings), the gunicorn receiver and one Celery
worker, then sends N Note Hook deliveries (comments without a command: every handler runs and
skips without calling GitLab, so the run measures the engine's own state, not GitLab's) in
batches, and reads Redis' `used_memory` and key count:

  baseline   after start-up, before the first delivery
  peak       the highest reading while deliveries are in flight or retained
  after      once every delivery finished and the retention windows passed

Retention is shortened for the run (records, dedup keys and bodies expire after --retention
seconds instead of days); what is measured is that every key the flow writes goes away or is
capped, i.e. that "after" returns to the baseline whatever N is.

Usage: ./dev bench soak [--deliveries 20000] [--batch 2000] [--retention 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT)]

import orjson
import redis
import requests

from tasks.platform.redis_server import RedisServer, free_port
from tests.support.procs import SECRET, base_env, start_web, start_worker


def note(i: int) -> bytes:
    return orjson.dumps({
        "object_kind": "note", "event_type": "note",
        "user": {"id": 7, "username": "alice", "name": "Alice"},
        "project_id": 15, "project": {"id": 15, "path_with_namespace": "acme/shop",
                                      "web_url": "http://gitlab.example.com/acme/shop"},
        "object_attributes": {"id": 100000 + i, "note": f"looks good to me ({i})",
                              "noteable_type": "Issue", "action": "create",
                              "created_at": "2026-12-01T10:00:00Z"},
        "issue": {"id": 5000, "iid": 42, "title": "Checkout fails"}})


def reading(client: redis.Redis) -> tuple[int, int]:
    info = client.info("memory")
    return int(info["used_memory"]), int(client.dbsize())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deliveries", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--retention", type=int, default=20)
    ap.add_argument("--senders", type=int, default=8)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    server = RedisServer(tmp / "redis", port=free_port()).start()
    client = redis.Redis.from_url(server.client_url())
    env = base_env(server.client_url(), INBOX_RETENTION_SECONDS=str(a.retention),
                   DEDUP_TTL_SECONDS=str(a.retention), BODY_RETENTION_SECONDS=str(a.retention),
                   RECONCILE_INTERVAL_SECONDS="0")
    web, url = start_web(env, tmp, workers=2)
    try:
        worker = start_worker(env, tmp, concurrency=2)
    except BaseException:
        web.stop()
        server.stop()
        raise
    session = requests.Session()
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": "Note Hook",
               "X-Gitlab-Token": SECRET}
    try:
        time.sleep(2)
        base_mem, base_keys = reading(client)
        peak_mem, peak_keys = base_mem, base_keys
        print(f"baseline: used_memory {base_mem / 1e6:.2f} MB, {base_keys} keys")
        sent = refused = 0
        started = time.monotonic()

        def post(i: int) -> int:
            return session.post(url + "/webhooks/gitlab", data=note(i), timeout=30, headers={
                **headers, "Idempotency-Key": str(uuid.uuid4())}).status_code

        with ThreadPoolExecutor(a.senders) as pool:
            while sent < a.deliveries:
                n = min(a.batch, a.deliveries - sent)
                codes = list(pool.map(post, range(sent, sent + n)))
                refused += sum(1 for c in codes if c != 202)
                sent += n
                mem, keys = reading(client)
                peak_mem, peak_keys = max(peak_mem, mem), max(peak_keys, keys)
                print(f"  {sent:>6} sent: used_memory {mem / 1e6:7.2f} MB, {keys:>6} keys, "
                      f"queue {client.llen('devops-agent')}")
        send_s = time.monotonic() - started
        while client.llen("devops-agent") or client.zcard("da:schedule") > 2:  # periodic items
            mem, keys = reading(client)
            peak_mem, peak_keys = max(peak_mem, mem), max(peak_keys, keys)
            time.sleep(1)
        drain_s = time.monotonic() - started
        print(f"all {sent} processed in {drain_s:.0f} s (sending took {send_s:.0f} s, "
              f"{refused} refused)")
        time.sleep(a.retention + 5)
        client.zremrangebyscore("da:inbox:log", "-inf", time.time() - a.retention)
        # Redis expires keys in the background (sampling); give the cycle time to finish.
        for _ in range(30):
            mem, keys = reading(client)
            if keys <= base_keys + 5:
                break
            time.sleep(1)
        left = sorted({k.decode().rsplit(":", 1)[0] for k in client.scan_iter(count=1000)})
        print(f"peak:     used_memory {peak_mem / 1e6:.2f} MB, {peak_keys} keys")
        print(f"after:    used_memory {mem / 1e6:.2f} MB, {keys} keys "
              f"(key families left: {', '.join(left[:12])})")
        print(f"after / baseline: memory {mem / base_mem:.2f}x, keys {keys - base_keys:+d}; "
              f"peak / baseline {peak_mem / base_mem:.1f}x")
    finally:
        worker.stop(group=True)
        web.stop()
        client.close()
        server.stop()


if __name__ == "__main__":
    main()
