"""Real processes for end-to-end tests: gunicorn serving the receiver, Celery workers, `serve`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import yaml

from tasks.platform.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret-token"


def base_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"REDIS_URL", "GITLAB_URL", "GITLAB_TOKEN", "SENTRY_DSN",
                        "WEBHOOK_SIGNING_KEY", "PROMETHEUS_MULTIPROC_DIR"}}
    env.update({"WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT),
                "REDELIVER_AFTER_SECONDS": "1", "TASK_LEASE_SECONDS": "2",
                # Tests flush Redis between cases while the fake GitLab keeps its history: a
                # reconcile pass would catch up on the previous case's work. The reconcile
                # tests turn it on.
                "RECONCILE_INTERVAL_SECONDS": "0"})
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05,
               what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Proc:
    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv, self.env, self.log_path = argv, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> Proc:
        self.started_at = time.time()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def stop(self, group: bool = True) -> None:
        """SIGTERM the process group, or (group=False) only the main process: a Celery worker
        then shuts down warmly, finishing its tasks instead of losing them to WorkerLostError."""
        if self.proc and self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_group()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_web(env: dict[str, str], tmp: Path, workers: int = 2) -> tuple[Proc, str]:
    port = free_port()
    env = {**env, "PORT": str(port), "HOST": "127.0.0.1",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp / f"metrics-{port}")}
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    proc = Proc([sys.executable, "-m", "gunicorn", "-c", "python:webhooks.gunicorn_conf",
                 "--workers", str(workers), "webhooks.app:create_app()"], env,
                tmp / f"web-{port}.log").start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.proc and proc.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited: {proc.log()[-3000:]}")
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, what="gunicorn to answer /healthz")
    return proc, url


def start_worker(env: dict[str, str], tmp: Path, name: str = "worker", concurrency: int = 2) -> Proc:
    proc = Proc([sys.executable, "-m", "tasks.cli.main", "worker", "--concurrency", str(concurrency)],
                env, tmp / f"{name}.log").start()
    wait_until(lambda: "ready." in proc.log() or _exited(proc), timeout=30,
               what="celery worker to be ready")
    if proc.proc and proc.proc.poll() is not None:
        raise AssertionError(f"worker exited: {proc.log()[-3000:]}")
    return proc


def _exited(proc: Proc) -> bool:
    return bool(proc.proc and proc.proc.poll() is not None)


def post_delivery(url: str, body: bytes, event: str, *, key: str | None = None,
                  token: str = SECRET, extra_headers: dict[str, str] | None = None
                  ) -> requests.Response:
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event,
               "X-Gitlab-Token": token, "User-Agent": "GitLab/17.11.0"}
    if key:
        headers["Idempotency-Key"] = key
    headers.update(extra_headers or {})
    return requests.post(url + "/webhooks/gitlab", data=body, headers=headers, timeout=10)


class Stack:
    """gunicorn + one worker on `env`; `close()` stops both and fails on any worker error line
    (expected trouble such as 429s is handled inside the adapters and must not escape)."""

    def __init__(self, env: dict[str, str], tmp: Path, web_workers: int = 1) -> None:
        self.env = env
        self.web, self.url = start_web(env, tmp, workers=web_workers)
        self.worker = start_worker(env, tmp)

    def close(self) -> None:
        self.worker.stop(group=False)
        self.web.stop()
        errors = [l for l in self.worker.log().splitlines() if '"level":"error"' in l]
        assert errors == [], errors[:3]


@contextlib.contextmanager
def configured_stack(config: dict[str, Any], tmp: Path, redis_url: str, gitlab: Any,
                     projects: str = "15", **env: str) -> Iterator[Stack]:
    """The service (gunicorn + a worker) on the YAML `config`, against the fake GitLab process
    `gitlab`, with a short redelivery so lost sends come back within the test's patience."""
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    stack = Stack(base_env(redis_url, GITLAB_URL=gitlab.url, GITLAB_TOKEN=gitlab.token,
                           GITLAB_PROJECTS=projects, DEVOPS_AGENT_CONFIG=str(tmp / "config.yaml"),
                           REDELIVER_AFTER_SECONDS="0.6", **env), tmp)
    try:
        yield stack
    finally:
        stack.close()


def deploys_settled(redis_client: Any, timeout: float = 60.0) -> None:
    """Wait until no deploy step is scheduled or running in the engine."""
    def settled() -> bool:
        members = redis_client.zrange("da:schedule", 0, -1)
        return not any(m.startswith(b"s:") for m in members) and \
            not list(redis_client.scan_iter("da:lease:s:*"))
    wait_until(settled, timeout=timeout, what="running deploys to finish")
