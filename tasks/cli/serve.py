"""`devops-agent serve` (everything on one machine) and `devops-agent worker` (the Celery side).

`serve` with no REDIS_URL starts a private redis-server in the data dir (append-only file, unix
socket), then gunicorn and one worker, and restarts any of them that dies: with the inbox and
the append-only file, a SIGKILL of any process loses no acknowledged delivery. With REDIS_URL
set it uses that Redis instead; the Procfile runs web and worker as separate processes.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tasks.config.settings import ConfigError, load_settings

log = logging.getLogger("devops_agent.serve")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run receiver + worker (+ embedded Redis when REDIS_URL is unset)")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the embedded Redis keeps its files (default: DATA_DIR or ./devops-agent-data)")
    p.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    p.add_argument("--concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2")))
    p.set_defaults(func=serve)

    w = sub.add_parser("worker", help="run a Celery worker (needs REDIS_URL)")
    w.add_argument("--concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2")))
    w.add_argument("--pool", default=os.environ.get("WORKER_POOL", "prefork"),
                   choices=["prefork", "threads", "solo"])
    w.set_defaults(func=worker)


def _die_with_parent() -> None:
    """Children get SIGTERM if `serve` itself is killed, so nothing is left orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: children may outlive a SIGKILLed parent
        pass


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, preexec_fn=_die_with_parent)
        log.info("started %s", self.name, extra={"pid": self.proc.pid})

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    from tasks.platform.logs import configure_logging

    configure_logging(settings.log_level, settings.secret_values())
    try:  # refuse to start with a broken configuration or rules table, before spawning anything
        from tasks.ci.rules import load_table
        from tasks.config.agent import load_config

        load_config(settings.config_file)
        load_table(settings.rules_file)
    except Exception as exc:  # noqa: BLE001 - ConfigError, RulesError: reported the same way
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    data_dir = (args.data_dir or Path(os.environ.get("DATA_DIR", "devops-agent-data"))).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    redis_server = None
    if not settings.redis_url:
        from tasks.platform.redis_server import RedisServer

        redis_server = RedisServer(data_dir / "redis", unix_socket=True)
        redis_server.start()
        env["REDIS_URL"] = redis_server.client_url()
        log.info("embedded Redis started", extra={"data_dir": str(data_dir / "redis")})
    metrics_dir = data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env["HOST"], env["PORT"] = args.host, str(args.port)
    children = [
        Child("web", [sys.executable, "-m", "gunicorn", "-c", "python:webhooks.gunicorn_conf",
                      "--workers", str(args.web_workers), "webhooks.app:create_app()"], env),
        Child("worker", [sys.executable, "-m", "tasks.cli.main", "worker",
                         "--concurrency", str(args.concurrency)], env),
    ]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for child in children:
        child.start()
    print(f"devops-agent: listening on http://{args.host}:{args.port}/webhooks/gitlab "
          f"(data in {data_dir}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            if redis_server is not None and redis_server.proc and redis_server.proc.poll() is not None:
                log.error("embedded Redis died; restarting it from its append-only file")
                redis_server.start()
            for child in children:
                if not child.alive():
                    child.restarts += 1
                    log.error("%s exited (code %s); restarting", child.name,
                              child.proc.returncode if child.proc else None)
                    time.sleep(min(5.0, 0.2 * child.restarts))
                    child.start()
    finally:
        for child in reversed(children):
            child.stop()
        if redis_server is not None:
            redis_server.stop()
    return 0


def worker(args: argparse.Namespace) -> int:
    # Before anything imports prometheus_client, which picks its storage once at import.
    metrics_port = os.environ.get("WORKER_METRICS_PORT")
    if metrics_port:
        # Celery's pool children count into per-process files; the parent serves their sum.
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            import tempfile

            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="devops-agent-worker-")
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    try:
        settings = load_settings(require_secret=False)
    except ConfigError as exc:
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        print("devops-agent: REDIS_URL is not set (use `devops-agent serve` for the embedded "
              "default)", file=sys.stderr)
        return 2
    from tasks.platform.logs import configure_logging

    configure_logging(settings.log_level, settings.secret_values())
    from tasks.platform.sentry import init_sentry

    init_sentry(settings, "worker")
    # Fail now, not on the first task, if HANDLERS or the rules table is wrong.
    from tasks.wiring.runtime import build_runtime

    try:
        build_runtime(settings)
        from tasks.config.agent import load_config

        load_config(settings.config_file)
        if settings.rules_file is not None:
            from tasks.ci.rules import load_table

            load_table(settings.rules_file)
    except Exception as exc:  # noqa: BLE001 - any start-up error is reported the same way
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    from celery.signals import worker_ready

    from tasks.worker.celery_app import configure
    from tasks.worker.engine_loop import start_engine

    app = configure(settings.redis_url.replace("unix://", "redis+socket://"), settings.task_queue)
    # the engine loop (tasks/worker/engine_loop.py): periodic items, and redelivery of lost ones
    worker_ready.connect(lambda **_: start_engine(settings), weak=False)
    if metrics_port:
        worker_ready.connect(lambda **_: _serve_metrics(int(metrics_port)), weak=False)
    app.worker_main([
        "worker", "--loglevel", settings.log_level, "-Q", settings.task_queue,
        "--concurrency", str(args.concurrency), "--pool", args.pool,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"devops-agent-{os.getpid()}@%h",
    ])
    return 0


def _serve_metrics(port: int) -> None:
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=os.environ.get("WORKER_METRICS_HOST", "0.0.0.0"), registry=registry)
