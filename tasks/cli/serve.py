"""`devops-agent serve` (everything on one machine: tasks/cli/supervisor.py) and `devops-agent
worker` (the Celery side: tasks/worker/start.py); the Procfile runs web and worker as separate
processes.

Every command's module is imported to register its arguments, so each command's own code (and
its dependencies: pydantic, Redis, Celery) loads only when that command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from tasks.config.settings import ConfigError, load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run receiver + worker (+ embedded Redis when REDIS_URL is unset)")
    # Defaults come from the settings (HOST, PORT, ...), read when the command runs: a bad value
    # is then reported like every other setting, not as a traceback while building the parser.
    p.add_argument("--host", default=None, help="default: HOST or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: PORT or 8080")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the embedded Redis keeps its files (default: DATA_DIR or ./devops-agent-data)")
    p.add_argument("--web-workers", type=int, default=None, help="default: WEB_CONCURRENCY or 2")
    p.add_argument("--concurrency", type=int, default=None, help="default: WORKER_CONCURRENCY or 2")
    p.set_defaults(func=serve)

    w = sub.add_parser("worker", help="run a Celery worker (needs REDIS_URL)")
    w.add_argument("--concurrency", type=int, default=None, help="default: WORKER_CONCURRENCY or 2")
    w.add_argument("--pool", default=None, choices=["prefork", "threads", "solo"],
                   help="default: WORKER_POOL or prefork")
    w.set_defaults(func=worker)


def serve(args: argparse.Namespace) -> int:
    # Lazy: the supervisor's dependencies (pydantic, the Redis client) load only for `serve`.
    from tasks.cli.supervisor import supervise

    return supervise(args)


def worker(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(require_secret=False)
    except ConfigError as exc:
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    args.concurrency = args.concurrency or settings.worker_concurrency
    args.pool = args.pool or settings.worker_pool
    # Before anything imports prometheus_client, which picks its storage once at import.
    # PROMETHEUS_MULTIPROC_DIR is prometheus_client's own variable, not one of our settings.
    metrics_port = str(settings.worker_metrics_port) if settings.worker_metrics_port else None
    if metrics_port:
        # Celery's pool children count into per-process files; the parent serves their sum.
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="devops-agent-worker-")
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    if not settings.redis_url:
        print("devops-agent: REDIS_URL is not set (use `devops-agent serve` for the embedded "
              "default)", file=sys.stderr)
        return 2
    # Lazy: Celery, the handlers and prometheus_client load only for this command, and only
    # after the metrics directory above is set.
    from tasks.worker.start import run

    return run(settings, args, metrics_port)
