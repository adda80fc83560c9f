#!/usr/bin/env python3
"""Per-step cost of one delivery in the receiver, timed in one process (no HTTP, no gunicorn):
each step is run N times in a loop, best of R rounds (the least disturbed by other load on the
machine), as microseconds per call. Complements `run.py --profile` (py-spy under real load).

Run: .venv/bin/python bench/intake/steps.py [--n 2000] [--rounds 5] [--appendfsync always]
Starts its own redis-server (unix socket, as `serve` does) and stops it on exit.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="calls per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--appendfsync", choices=["always", "everysec", "no", "off"], default="always")
    p.add_argument("--payload", type=Path, default=ROOT / "fixtures/payloads/pipeline_failed.json")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="intake-steps-"))
    # As under gunicorn: multiprocess metrics (set before prometheus_client is imported).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "metrics")
    (tmp / "metrics").mkdir()
    from tasks.platform.redis_server import RedisServer

    redis_server = RedisServer(tmp / "redis", unix_socket=True).start()
    real_stderr = sys.stderr
    try:
        return run(args, tmp, redis_server, real_stderr)
    finally:
        sys.stderr = real_stderr
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path, redis_server, real_stderr) -> int:
    import baseline_apps
    import orjson
    import redis

    from tasks.config.settings import load_settings
    from tasks.intake.inbox import Inbox, celery_message, dedup_key
    from tasks.platform import metrics
    from tasks.platform.logs import log_context
    from webhooks.app import create_app, reply
    from webhooks.verify import check_token

    url = redis_server.client_url()
    client = redis.Redis.from_url(url)
    if args.appendfsync == "off":
        client.config_set("appendonly", "no")
    elif args.appendfsync != "always":
        client.config_set("appendfsync", args.appendfsync)
    secret = "steps-secret"
    env = {"WEBHOOK_SECRET": secret, "REDIS_URL": url, "LOG_LEVEL": "INFO"}
    os.environ.update(env)
    body = args.payload.read_bytes()
    # The receiver logs one JSON line per delivery to stderr; send it to a file, as a container would.
    log_file = open(tmp / "web.log", "w")  # noqa: SIM115 - handed to the server process
    sys.stderr = log_file
    app = create_app(load_settings(env))
    bare = baseline_apps.bare()
    sys.stderr = real_stderr
    import logging

    log = logging.getLogger("devops_agent.webhooks")
    inbox = Inbox(client, queue="devops-agent")

    template = {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/webhooks/gitlab",
        "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0), "wsgi.errors": io.StringIO(), "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False,
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        "HTTP_X_GITLAB_EVENT": "Pipeline Hook", "HTTP_X_GITLAB_TOKEN": secret,
        "HTTP_USER_AGENT": "GitLab/17.11.0", "HTTP_HOST": "127.0.0.1:8080",
    }
    statuses: dict[str, int] = {}

    def start_response(status, headers, exc_info=None):
        statuses[status] = statuses.get(status, 0) + 1

    def wsgi_call(wsgi_app):
        def call():
            environ = dict(template)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["HTTP_IDEMPOTENCY_KEY"] = uuid.uuid4().hex
            b"".join(wsgi_app(environ, start_response))
        return call

    meta = {"User-Agent": "GitLab/17.11.0"}

    def accept():
        inbox.accept(event="Pipeline Hook", kind="pipeline", body=body,
                     idempotency_key=uuid.uuid4().hex, meta=meta)

    def log_queued():
        with log_context(idempotency_key="k", event="Pipeline Hook"):
            log.info("queued", extra={"delivery_id": "d", "bytes": len(body)})

    def set_stderr(to):
        sys.stderr = to

    # name -> (callable, note)
    steps = [
        ("bare Flask app, whole WSGI call (reads body, 200)", wsgi_call(bare)),
        ("receiver, whole WSGI call (incl. Redis round trip)", wsgi_call(app)),
        ("  Inbox.accept: Lua dedup+record+enqueue, 1 round trip", accept),
        ("  Redis LPUSH of the body, 1 round trip (baseline)", lambda: client.lpush("bench:l", body)),
        ("  Redis PING, 1 round trip (no write)", client.ping),
        ("  log.info('queued') JSON line to a file (+log_context)", log_queued),
        ("  metrics DELIVERIES.labels().inc() (multiprocess)",
         lambda: metrics.DELIVERIES.labels(event="Pipeline Hook", outcome="queued").inc()),
        ("  metrics ENQUEUE_SECONDS.observe() (multiprocess)",
         lambda: metrics.ENQUEUE_SECONDS.observe(0.001)),
        ("  orjson.loads(body)", lambda: orjson.loads(body)),
        ("  check_token", lambda: check_token(secret, [secret.encode()])),
        ("  dedup_key (sha256)", lambda: dedup_key("k", "Pipeline Hook", body)),
        ("  celery_message (envelope, base64, uuid4)",
         lambda: celery_message("d" * 32, "devops-agent", "d" * 32)),
        ("  uuid.uuid4().hex", lambda: uuid.uuid4().hex),
        ("  reply(202, ...) (orjson + Response)", lambda: reply(202, status="queued", delivery_id="d")),
        ("receiver, whole WSGI call, Inbox.accept replaced by a stub", "stub"),
    ]
    print(f"per-call cost, best of {args.rounds} rounds of {args.n} calls; redis over unix socket, "
          f"appendfsync {args.appendfsync}; payload {args.payload.name} ({len(body)} B)")
    print(f"{'us/call':>8}  step")
    from tasks.intake.inbox import Accepted

    for name, fn in steps:
        if fn == "stub":  # last: from here on the receiver's inbox does no Redis call
            Inbox.accept = lambda self, **kw: Accepted(uuid.uuid4().hex, duplicate=False)
            fn = wsgi_call(app)
        redirect = "log" in name or "receiver" in name
        if redirect:
            set_stderr(log_file)
        best = float("inf")
        try:
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for _ in range(args.n):
                    fn()
                best = min(best, (time.perf_counter() - t0) / args.n)
        finally:
            if redirect:
                set_stderr(real_stderr)
        print(f"{best * 1e6:8.1f}  {name}", flush=True)
    print(f"statuses seen: {statuses}")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
