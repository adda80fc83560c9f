"""Failed pipelines end to end: receiver → real Redis → real worker → fake GitLab over HTTP."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import orjson
import pytest

from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import record_key
from tests.support.logs import fixture_log
from tests.support.procs import Stack, base_env, post_delivery, wait_until

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "fixtures" / "payloads"
PROJECT = 15


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failures")
    from tasks.platform.redis_server import free_port

    metrics_port = free_port()
    env = base_env(redis_server.client_url(), GITLAB_URL=fake_gitlab_process.url,
                   GITLAB_TOKEN=fake_gitlab_process.token, GITLAB_PROJECTS="acme/*",
                   INCIDENT_PROJECT="acme/shop", WORKER_METRICS_PORT=str(metrics_port),
                   WORKER_METRICS_HOST="127.0.0.1")
    stack = Stack(env, tmp)
    yield {"url": stack.url, "metrics": f"http://127.0.0.1:{metrics_port}/metrics"}
    stack.close()


@pytest.fixture
def gl(stack, fake_gitlab_proc, redis_client):
    """A seeded fake matching fixtures/payloads: issue #42, MR !7 closing it, pipeline 1201."""
    fake = fake_gitlab_proc
    fake.add_project("acme/shop", id=PROJECT)
    fake.add_issue(PROJECT, "Checkout fails", iid=42)
    fake.add_mr(PROJECT, "Fix checkout", "42-fix-checkout", iid=7, description="Closes #42")
    fake.add_pipeline(PROJECT, id=1201, ref="42-fix-checkout", status="failed", jobs=[
        {"id": 9201, "name": "build-image", "stage": "build", "status": "success"},
        {"id": 9202, "name": "unit-tests", "stage": "test", "status": "failed",
         "failure_reason": "script_failure", "trace": fixture_log("pytest-failure.log").read_text()},
        {"id": 9203, "name": "integration-tests", "stage": "test", "status": "failed",
         "failure_reason": "runner_system_failure",
         "trace": fixture_log("runner-system-failure.log").read_text()},
        {"id": 9204, "name": "lint", "stage": "test", "status": "failed", "allow_failure": True},
    ])
    fake.clear_calls()
    return fake


def adapter(fake) -> GitLabAdapter:
    return GitLabAdapter(fake.url, fake.token)


def send(stack, redis_client, body: bytes, event: str, key: str | None = None) -> str:
    r = post_delivery(stack["url"], body, event, key=key or str(uuid.uuid4()))
    assert r.status_code in (200, 202), r.text
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
               timeout=30, what="the delivery to be processed")
    return delivery_id


def pipeline_payload(**changes) -> dict:
    payload = orjson.loads((PAYLOADS / "pipeline_failed.json").read_bytes())
    payload["object_attributes"].update(changes)
    return payload


def only_runner_failure(payload: dict) -> dict:
    payload = copy.deepcopy(payload)
    payload["builds"] = [b for b in payload["builds"] if b["name"] != "unit-tests"]
    return payload


def our_notes(fake, kind="issue", iid=42):
    return [n for n in adapter(fake).list_notes(PROJECT, kind, iid)
            if "devops-agent:ci:" in n["body"]]


def retries(fake):
    return fake.calls(method="POST", path_re=r"/jobs/\d+/retry$")


def test_runner_failure_is_retried_once_and_explained_on_the_linked_issue(stack, gl, redis_client):
    body = orjson.dumps(only_runner_failure(pipeline_payload()))
    key = "pipeline-1201-failed"
    for _ in range(5):  # GitLab resends, or someone clicks "Resend request"
        send(stack, redis_client, body, "Pipeline Hook", key=key)
    send(stack, redis_client, body + b" ", "Pipeline Hook")  # a copy under another key
    assert len(retries(gl)) == 1
    assert "/jobs/9203/retry" in retries(gl)[0]["path"]
    notes = our_notes(gl)
    assert len(notes) == 1
    assert "integration-tests" in notes[0]["body"] and "retried, attempt 1 of 2" in notes[0]["body"]
    assert "runner_system_failure" in notes[0]["body"]
    labels = adapter(gl).get_issue(PROJECT, 42)["labels"]
    assert "ci::failed" in labels and "ci-failure:runner_system_failure" in labels


def test_retried_job_failing_again_edits_comment_then_stops(stack, gl, redis_client):
    body = orjson.dumps(only_runner_failure(pipeline_payload()))
    send(stack, redis_client, body, "Pipeline Hook")
    jobs = {j["name"]: j for j in adapter(gl).pipeline_jobs(PROJECT, 1201)}
    new_id = jobs["integration-tests"]["id"]
    assert new_id != 9203
    job_hook = orjson.loads((PAYLOADS / "job_failed_runner_system.json").read_bytes())
    for attempt in (2, 3):
        gl.set_job_status(new_id, "failed", "runner_system_failure")
        gl.set_trace(new_id, fixture_log("runner-system-failure.log").read_text())
        job_hook.update(build_id=new_id, retries_count=attempt - 1)
        send(stack, redis_client, orjson.dumps(job_hook), "Job Hook")
        jobs = {j["name"]: j for j in adapter(gl).pipeline_jobs(PROJECT, 1201)}
        new_id = jobs["integration-tests"]["id"]
    assert len(retries(gl)) == 2  # attempts 1 and 2; no third
    [note] = our_notes(gl)
    assert "retry budget used (2 of 2)" in note["body"]
    edits = gl.calls(method="PUT", path_re=r"/issues/42/notes/\d+$")
    assert len(edits) >= 1


def test_test_failure_is_not_retried_and_a_fix_issue_is_filed(stack, gl, redis_client):
    gl.set_job_status(9203, "success")  # GitLab's own record is what counts, not the body
    payload = pipeline_payload()
    payload["builds"] = [b for b in payload["builds"] if b["name"] != "integration-tests"]
    for _ in range(3):
        send(stack, redis_client, orjson.dumps(payload), "Pipeline Hook", key="tests-failed")
    send(stack, redis_client, orjson.dumps(payload) + b"\n", "Pipeline Hook")
    assert retries(gl) == []

    def fix_issues():
        return [i for i in adapter(gl).find_issues(PROJECT, labels=["ci-fix-needed"])]

    wait_until(fix_issues, timeout=20, what="the fix issue")
    [issue] = fix_issues()
    assert "unit-tests" in issue["title"] and "FAILED" in issue["description"]
    [note] = our_notes(gl)
    assert "not retried: test failure" in note["body"]


def test_later_success_updates_the_comment_and_flips_labels(stack, gl, redis_client):
    send(stack, redis_client, orjson.dumps(only_runner_failure(pipeline_payload())), "Pipeline Hook")
    gl.add_pipeline(PROJECT, id=1250, ref="42-fix-checkout", status="success",
                    jobs=[{"name": "integration-tests", "status": "success"}])
    success = orjson.loads((PAYLOADS / "pipeline_success.json").read_bytes())
    success["object_attributes"].update(id=1250, ref="42-fix-checkout", status="success")
    success["merge_request"] = pipeline_payload()["merge_request"]
    send(stack, redis_client, orjson.dumps(success), "Pipeline Hook")
    [note] = our_notes(gl)
    assert "passed" in note["body"] and "#1250" in note["body"]
    labels = adapter(gl).get_issue(PROJECT, 42)["labels"]
    assert "ci::passed" in labels and "ci::failed" not in labels
    assert not any(l.startswith("ci-failure:") for l in labels)


def test_twelve_failed_jobs_are_an_outage_not_retried(stack, gl, redis_client):
    payload = pipeline_payload(id=1300)
    gl.add_pipeline(PROJECT, id=1300, ref="42-fix-checkout", status="failed", jobs=[
        {"id": 9300 + i, "name": f"shard-{i}", "status": "failed",
         "failure_reason": "runner_system_failure"} for i in range(12)])
    payload["builds"] = [{**pipeline_payload()["builds"][2], "id": 9300 + i, "name": f"shard-{i}"}
                         for i in range(12)]
    send(stack, redis_client, orjson.dumps(payload), "Pipeline Hook")
    assert retries(gl) == []
    [note] = our_notes(gl)
    assert note["body"].count("12 jobs failed at once") == 12


def test_gitlab_429_and_500_are_retried_within_bounds_without_duplicates(stack, gl, redis_client):
    gl.fault(r"/issues/42/notes$", method="POST", status=429, retry_after=0, count=2)
    gl.fault(r"/jobs/9203/trace$", method="GET", status=500, count=1)
    body = orjson.dumps(only_runner_failure(pipeline_payload()))
    send(stack, redis_client, body, "Pipeline Hook")
    assert len(retries(gl)) == 1
    assert len(our_notes(gl)) == 1
    posts = gl.calls(method="POST", path_re=r"/issues/42/notes$")
    assert [c["status"] for c in posts] == [429, 429, 201]


def test_projects_not_configured_are_ignored(stack, gl, redis_client):
    payload = only_runner_failure(pipeline_payload())
    payload["project"] = {**payload["project"], "id": 99, "path_with_namespace": "other/repo"}
    send(stack, redis_client, orjson.dumps(payload), "Pipeline Hook")
    assert gl.write_calls() == []


def test_worker_metrics_count_classifications(stack, gl, redis_client):
    import requests

    send(stack, redis_client, orjson.dumps(only_runner_failure(pipeline_payload())), "Pipeline Hook")
    text = wait_until(lambda: requests.get(stack["metrics"], timeout=2).text, what="metrics")
    assert 'devops_agent_job_failures_total{category="runner_system_failure"}' in text
    assert 'devops_agent_events_processed_total{kind="pipeline",outcome="done"}' in text
