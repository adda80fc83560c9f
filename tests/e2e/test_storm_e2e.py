"""200 failed pipelines through a worker kill storm and a 10 s Redis outage.

A real receiver, real worker processes killed with SIGKILL every few seconds, a Redis server
killed and restarted from its append-only file, and the fake GitLab. Hooks that arrive while
Redis is down get a 503 (GitLab does not send them again); the reconcile pass catches those up.
Afterwards every pipeline has been processed: each failed job retried exactly once and each
issue has exactly one comment."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from tasks.gitlab.client import GitLabAdapter
from tasks.platform.redis_server import RedisServer, free_port
from tests.e2e.test_failures_e2e import pipeline_payload
from tests.support.logs import fixture_log
from tests.support.procs import base_env, post_delivery, start_web, start_worker, wait_until

PROJECT = 15
N = 200
TRACE = fixture_log("runner-system-failure.log").read_text()


def seed(fake) -> None:
    fake.add_project("acme/shop", id=PROJECT)
    for i in range(N):
        ref = f"{1000 + i}-fix"
        fake.add_issue(PROJECT, f"Bug {i}", iid=1000 + i)
        fake.add_mr(PROJECT, f"Fix {i}", ref, iid=2000 + i, description=f"Closes #{1000 + i}")
        fake.add_pipeline(PROJECT, id=50000 + i, ref=ref, status="failed", jobs=[
            {"id": 60000 + i, "name": "integration-tests", "stage": "test", "status": "failed",
             "failure_reason": "runner_system_failure", "trace": TRACE}])


def hook(i: int) -> bytes:
    payload = pipeline_payload(id=50000 + i, ref=f"{1000 + i}-fix")
    payload["merge_request"] = {**payload["merge_request"], "iid": 2000 + i,
                                "source_branch": f"{1000 + i}-fix"}
    payload["builds"] = []
    return orjson.dumps(payload)


@pytest.mark.slow
def test_kill_storm_and_redis_outage_lose_nothing_and_double_nothing(fake_gitlab_proc, tmp_path):
    fake = fake_gitlab_proc
    seed(fake)
    redis = RedisServer(tmp_path / "redis", port=free_port()).start()
    env = base_env(redis.client_url(), GITLAB_URL=fake.url, GITLAB_TOKEN=fake.token,
                   GITLAB_PROJECTS="acme/*", RECONCILE_INTERVAL_SECONDS="3",
                   REDELIVER_AFTER_SECONDS="1", TASK_LEASE_SECONDS="2")
    web, url = start_web(env, tmp_path)
    workers = [start_worker(env, tmp_path, name="worker-0")]
    answers: dict[int, int] = {}

    def send_all() -> None:
        for i in range(N):
            try:
                answers[i] = post_delivery(url, hook(i), "Pipeline Hook",
                                           key=f"storm-{i}").status_code
            except Exception:  # noqa: BLE001 - a refused connection is what GitLab would see
                answers[i] = 0
            time.sleep(0.03)

    sender = threading.Thread(target=send_all)
    try:
        sender.start()
        for round_ in range(1, 5):
            time.sleep(2.5)
            workers[-1].kill_group()
            if round_ == 2:
                redis.kill()
                time.sleep(10)
                redis.start()
            workers.append(start_worker(env, tmp_path, name=f"worker-{round_}"))
        sender.join()

        def retried() -> dict[int, int]:
            counts: dict[int, int] = {}
            for effect in fake.side_effects():
                if ":job_retried:" in effect:
                    job = int(effect.rsplit(":", 1)[1].split("->")[0])
                    counts[job] = counts.get(job, 0) + 1
            return counts
        wait_until(lambda: len(retried()) == N, timeout=240, interval=1,
                   what="every pipeline's failed job to be retried")
        assert sorted(retried().values()) == [1] * N, "a job was retried twice"
        gl = GitLabAdapter(fake.url, fake.token)

        def comments(i: int) -> int:
            return len([n for n in gl.list_notes(PROJECT, "issue", 1000 + i)
                        if "devops-agent:ci:" in n["body"]])
        wait_until(lambda: all(comments(i) == 1 for i in range(0, N, 7)), timeout=60,
                   interval=1, what="the comments")
        assert {i: comments(i) for i in range(N) if comments(i) != 1} == {}
        refused = [i for i, status in answers.items() if status != 202]
        assert refused, "the outage refused no hook: it did not test the reconcile path"
    finally:
        sender.join(timeout=30)
        for proc in workers:
            proc.stop(group=True)
        web.stop()
        redis.stop()
