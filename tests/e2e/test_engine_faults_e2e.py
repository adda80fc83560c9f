"""The engine under faults: a real receiver, real Redis, real worker processes that get killed,
python-gitlab over HTTP against the fake GitLab answering slowly, 403, 404, 429 and 500.

Each case states what must be true afterwards: how many times GitLab saw the effect (its own
record of side effects), what the one comment says, and how the delivery ended."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import record_key
from tests.e2e.test_failures_e2e import only_runner_failure, pipeline_payload
from tests.support.logs import fixture_log
from tests.support.procs import Stack, base_env, post_delivery, start_worker, wait_until

PROJECT = 15


@pytest.fixture(scope="module")
def env(redis_server, fake_gitlab_process):
    return base_env(redis_server.client_url(), GITLAB_URL=fake_gitlab_process.url,
                    GITLAB_TOKEN=fake_gitlab_process.token, GITLAB_PROJECTS="acme/*",
                    GITLAB_TIMEOUT_SECONDS="1.5", REDELIVER_AFTER_SECONDS="1",
                    TASK_LEASE_SECONDS="2")


@pytest.fixture(scope="module")
def stack(env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    stack = Stack(env, tmp)
    stack.tmp = tmp
    yield stack
    stack.close()


def seed(fake, bot_access: int = 40) -> None:
    fake.add_project("acme/shop", id=PROJECT, bot_access=bot_access)
    fake.add_issue(PROJECT, "Checkout fails", iid=42)
    fake.add_mr(PROJECT, "Fix checkout", "42-fix-checkout", iid=7, description="Closes #42")
    fake.add_pipeline(PROJECT, id=1201, ref="42-fix-checkout", status="failed", jobs=[
        {"id": 9201, "name": "build-image", "stage": "build", "status": "success"},
        {"id": 9203, "name": "integration-tests", "stage": "test", "status": "failed",
         "failure_reason": "runner_system_failure",
         "trace": fixture_log("runner-system-failure.log").read_text()},
    ])
    fake.clear_calls()


@pytest.fixture
def gl(stack, fake_gitlab_proc, redis_client):
    yield fake_gitlab_proc
    fake_gitlab_proc.clear_faults()


def deliver(stack, body: bytes, event: str = "Pipeline Hook") -> str:
    r = post_delivery(stack.url, body, event, key=str(uuid.uuid4()))
    assert r.status_code == 202, r.text
    return r.json()["delivery_id"]


def finished(redis_client, delivery_id: str, timeout: float = 40) -> str:
    def status():
        raw = redis_client.hget(record_key(delivery_id), "status")
        return raw.decode() if raw and raw.decode() in ("done", "failed", "dead", "invalid") else None
    return wait_until(status, timeout=timeout, what=f"delivery {delivery_id} to finish")


def retried(fake) -> list[str]:
    return [e for e in fake.side_effects() if ":job_retried:9203->" in e]


def comments(fake) -> list[str]:
    return [n["body"] for n in GitLabAdapter(fake.url, fake.token).list_notes(PROJECT, "issue", 42)
            if "devops-agent:ci:" in n["body"]]


def failing_pipeline() -> bytes:
    return orjson.dumps(only_runner_failure(pipeline_payload()))


def test_worker_killed_between_claim_and_retry_post_retries_once_and_says_so(stack, gl,
                                                                              redis_client, env):
    seed(gl)
    # The read that comes after the retry claim and before its POST is slowed down, and the
    # worker is killed while it waits: the claim is taken, GitLab never saw the POST.
    # (Shorter than the client's 1.5 s timeout: the read itself must succeed.)
    gl.fault(r"/pipelines/1201/jobs$", method="GET", delay=1.2, count=None)
    delivery = deliver(stack, failing_pipeline())

    def read_in_flight_after_claim():
        if not redis_client.keys("da:attempts:*"):
            return False
        reads = gl.calls(method="GET", path_re=r"/pipelines/1201/jobs$")
        return any(r["status"] is None for r in reads)
    wait_until(read_in_flight_after_claim, timeout=30, what="the read after the retry claim")
    assert retried(gl) == []
    stack.worker.kill_group()
    gl.clear_faults()
    stack.worker = start_worker(env, stack.tmp, name="worker-after-kill")
    assert finished(redis_client, delivery) == "done"
    assert len(retried(gl)) == 1
    [comment] = comments(gl)
    assert "retried, attempt 1 of 2" in comment


def test_retry_post_that_timed_out_but_was_applied_is_not_sent_again(stack, gl, redis_client):
    seed(gl)
    # GitLab applies the POST after the client (1.5 s timeout) gave up on it.
    gl.fault(r"/jobs/9203/retry$", method="POST", delay=3, count=1)
    delivery = deliver(stack, failing_pipeline())
    assert finished(redis_client, delivery) == "done"
    assert len(gl.calls(method="POST", path_re=r"/jobs/9203/retry$")) == 1
    assert len(retried(gl)) == 1
    [comment] = comments(gl)
    assert "retried, attempt 1 of 2" in comment


def test_reporter_bot_says_what_it_could_not_do_once_per_pipeline(stack, gl, redis_client):
    seed(gl, bot_access=20)
    first = deliver(stack, failing_pipeline())
    again = deliver(stack, failing_pipeline() + b" ")  # a second copy under another key
    assert finished(redis_client, first) == "done"
    assert finished(redis_client, again) == "done"
    assert retried(gl) == []
    [comment] = comments(gl)
    assert "could not retry 'integration-tests'" in comment, comment  # a table cell: no backticks
    assert "Reporter access to acme/shop and needs Developer" in comment
    assert not [d for d in _statuses(redis_client) if d == "dead"]


def _statuses(redis_client) -> list[str]:
    return [(redis_client.hget(k, "status") or b"").decode()
            for k in redis_client.scan_iter("da:inbox:*") if redis_client.type(k) == b"hash"]


def test_rate_limit_retry_after_is_honoured(stack, gl, redis_client):
    seed(gl)
    gl.fault(r"/pipelines/1201$", method="GET", status=429, retry_after=3, count=1)
    delivery = deliver(stack, failing_pipeline())
    assert finished(redis_client, delivery) == "done"
    reads = gl.calls(method="GET", path_re=r"/pipelines/1201$")
    assert reads[0]["status"] == 429 and reads[1]["status"] == 200
    assert reads[1]["time"] - reads[0]["time"] >= 3.0
    assert len(retried(gl)) == 1


def test_objects_that_do_not_exist_finish_once_without_retries(stack, gl, redis_client):
    seed(gl)
    payload = only_runner_failure(pipeline_payload(id=999999))
    delivery = deliver(stack, orjson.dumps(payload))
    assert finished(redis_client, delivery) == "done"
    assert len(gl.calls(method="GET", path_re=r"/pipelines/999999$")) == 1
    attempts = int(redis_client.hget(record_key(delivery), "attempts"))
    assert attempts == 1
    gone = orjson.dumps({**payload, "project": {**payload["project"], "id": 4040,
                                                "path_with_namespace": "acme/gone"}})
    delivery = deliver(stack, gone)
    assert finished(redis_client, delivery) == "done"
    assert int(redis_client.hget(record_key(delivery), "attempts")) == 1
    log = stack.worker.log()
    assert "GitLab has no pipeline 999999" in log


def test_first_write_failing_with_500_still_gives_one_comment(stack, gl, redis_client):
    seed(gl)
    gl.fault(r"/issues/42/notes$", method="POST", status=500, count=1)
    delivery = deliver(stack, failing_pipeline())
    assert finished(redis_client, delivery) == "done"
    assert len(retried(gl)) == 1
    assert len(comments(gl)) == 1
    time.sleep(0.5)
    assert len(comments(gl)) == 1
