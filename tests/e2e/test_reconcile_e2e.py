"""Nothing missed while down: pipelines fail and a command is given while the receiver is down
(no webhook ever arrives); after the restart the reconcile pass finds them and they are
processed exactly once, through the same path as a webhook, marked as reconciled."""

from __future__ import annotations

import orjson
import pytest

from tasks.gitlab.client import GitLabAdapter
from tests.support.fake_gitlab.state import DEVELOPER
from tests.support.logs import fixture_log
from tests.support.procs import Stack, base_env, start_web, start_worker, wait_until

PROJECT = 15
ALICE = 7


@pytest.fixture
def env(redis_server, fake_gitlab_process):
    return base_env(redis_server.client_url(), GITLAB_URL=fake_gitlab_process.url,
                    GITLAB_TOKEN=fake_gitlab_process.token, GITLAB_PROJECTS="acme/*",
                    RECONCILE_INTERVAL_SECONDS="1")


def failed_pipeline(fake, pipeline_id: int, job_id: int, ref: str) -> None:
    fake.add_branch(PROJECT, ref)
    fake.add_pipeline(PROJECT, id=pipeline_id, ref=ref, status="failed", jobs=[
        {"id": job_id, "name": "integration-tests", "stage": "test", "status": "failed",
         "failure_reason": "runner_system_failure",
         "trace": fixture_log("runner-system-failure.log").read_text()}])


def test_work_done_while_the_receiver_was_down_is_caught_up_exactly_once(
        env, fake_gitlab_proc, redis_client, tmp_path):
    fake = fake_gitlab_proc
    fake.add_user("dev-alice", id=ALICE)
    fake.add_project("acme/shop", id=PROJECT, members={ALICE: DEVELOPER})
    fake.add_issue(PROJECT, "Checkout fails", iid=42)
    stack = Stack(env, tmp_path)
    try:
        stack.web.stop()  # the receiver is down: GitLab's hooks fail, nothing is recorded
        for n, ref in enumerate(("42-fix-a", "42-fix-b", "42-fix-c")):
            failed_pipeline(fake, 3001 + n, 9301 + n, ref)
            fake.add_mr(PROJECT, f"Fix {n}", ref, iid=10 + n, description="Closes #42")
        fake.add_note(PROJECT, "issue", 42, "/devops help", author_id=ALICE)
        stack.web, stack.url = start_web(env, tmp_path)
        # The worker's reconcile pass (every second here) feeds what no hook brought.
        wait_until(lambda: len(_retries(fake)) == 3, timeout=40,
                   what="the three failed pipelines to be caught up")
        wait_until(lambda: any("devops-agent:cmd:" in b for b in _replies(fake)),
                   timeout=40, what="the command given while down to be answered")
        wait_until(lambda: _all_finished(redis_client), timeout=30, what="deliveries to finish")
        listed = _deliveries(redis_client)
        assert len(listed) == 4 and all(d["reconciled"] for d in listed), listed
        # More passes, and a worker restart, find nothing new to do.
        stack.worker.stop(group=False)
        stack.worker = start_worker(env, tmp_path, name="worker-2")
        wait_until(lambda: redis_client.get("da:reconcile:last-pass") is not None
                   and float(redis_client.get("da:reconcile:last-pass")) > _started(stack),
                   timeout=30, what="a pass by the new worker")
        assert len(_retries(fake)) == 3
        assert len(_deliveries(redis_client)) == 4
        assert len([b for b in _replies(fake) if "devops-agent:cmd:" in b]) == 1
        assert len([b for b in _replies(fake) if "devops-agent:ci:" in b]) == 3
    finally:
        stack.close()


def _started(stack) -> float:
    return stack.worker.started_at


def _retries(fake) -> list[str]:
    return [e for e in fake.side_effects() if ":job_retried:" in e]


def _replies(fake) -> list[str]:
    return [n["body"] for n in GitLabAdapter(fake.url, fake.token).list_notes(PROJECT, "issue", 42)]


def _deliveries(redis_client) -> list[dict]:
    out = []
    for key in redis_client.scan_iter("da:inbox:*"):
        if redis_client.type(key) != b"hash" or not redis_client.hexists(key, "event"):
            continue
        meta = orjson.loads(redis_client.hget(key, "meta") or b"{}")
        out.append({"status": redis_client.hget(key, "status").decode(),
                    "key": redis_client.hget(key, "idempotency_key").decode(),
                    "reconciled": bool(meta.get("reconciled"))})
    return out


def _all_finished(redis_client) -> bool:
    listed = _deliveries(redis_client)
    return bool(listed) and all(d["status"] == "done" for d in listed)
