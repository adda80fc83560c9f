"""Pipeline fixes end to end: Pipeline Hooks → receiver → real Redis → real Celery worker (the
triage, then the `pipeline_fix` follow-on job through the engine) → python-gitlab over HTTP →
the fake GitLab subprocess, whose CI lint checks the changed configuration."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import record_key
from tests.e2e.test_failures_e2e import PAYLOADS
from tests.support.logs import fixture_log
from tests.support.procs import Stack, base_env, post_delivery, wait_until

PROJECT = 15
CI = """# The shop's pipeline. Keep the jobs in stage order.
stages: [build, test]

.docker: &docker
  image: python:3.12   # pinned: the wheel needs 3.12
  tags: [docker]

build:
  <<: *docker
  stage: build
  script:
    - make wheel   # dist/*.whl

integration-tests:
  <<: *docker
  stage: test
  # Talks to the staging database: slow, and the runner pool is small.
  script:
    - pytest tests/integration
"""


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline-fix")
    config = tmp / "agent.yaml"
    config.write_text("pipeline_fixes:\n  threshold: 3\n  window_days: 1\n"
                      "  labels: [devops-agent, ci-config]\n")
    env = base_env(redis_server.client_url(), GITLAB_URL=fake_gitlab_process.url,
                   GITLAB_TOKEN=fake_gitlab_process.token, GITLAB_PROJECTS="acme/*",
                   DEVOPS_AGENT_CONFIG=str(config))
    stack = Stack(env, tmp)
    yield {"url": stack.url}
    stack.close()


@pytest.fixture
def gl(stack, fake_gitlab_proc, redis_client):
    fake = fake_gitlab_proc
    fake.add_project("acme/shop", id=PROJECT, files={".gitlab-ci.yml": CI})
    fake.add_issue(PROJECT, "Checkout fails", iid=42)
    fake.add_mr(PROJECT, "Fix checkout", "42-fix-checkout", iid=7, description="Closes #42")
    return fake


def api(fake) -> GitLabAdapter:
    return GitLabAdapter(fake.url, fake.token)


def fail_pipeline(stack, fake, redis_client, pipeline_id: int, job: str = "integration-tests",
                  reason: str = "runner_system_failure",
                  log: str = "runner-system-failure.log") -> None:
    """GitLab runs a pipeline whose `job` fails, and sends its Pipeline Hook."""
    fake.add_pipeline(PROJECT, id=pipeline_id, ref="42-fix-checkout", status="failed", jobs=[
        {"name": "build", "stage": "build", "status": "success"},
        {"id": pipeline_id * 10, "name": job, "stage": "test", "status": "failed",
         "failure_reason": reason, "trace": fixture_log(log).read_text()}])
    payload = orjson.loads((PAYLOADS / "pipeline_failed.json").read_bytes())
    payload["object_attributes"]["id"] = pipeline_id
    r = post_delivery(stack["url"], orjson.dumps(payload), "Pipeline Hook", key=str(uuid.uuid4()))
    assert r.status_code == 202, r.text
    delivery = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery), "status") == b"done",
               timeout=30, what="the delivery to be processed")


def our_mrs(fake, state="all"):
    return [m for m in api(fake).find_mrs(PROJECT, state=state)
            if "devops-agent:pipeline-fix:" in (m.get("description") or "")]


def failure_comment(fake) -> str:
    notes = [n for n in api(fake).list_notes(PROJECT, "issue", 42)
             if "devops-agent:ci:" in n["body"]]
    assert len(notes) == 1
    return notes[0]["body"]


def test_three_runner_failures_open_one_mr_and_the_fourth_does_not(stack, gl, redis_client):
    for pipeline in (1301, 1302):
        fail_pipeline(stack, gl, redis_client, pipeline)
    assert our_mrs(gl) == []
    fail_pipeline(stack, gl, redis_client, 1303)

    [mr] = wait_until(lambda: our_mrs(gl), timeout=30, what="the merge request")
    assert mr["title"] == "CI: retry `integration-tests` on runner_system_failure"
    assert mr["target_branch"] == "main" and set(mr["labels"]) == {"devops-agent", "ci-config"}
    changed = api(gl).get_file(PROJECT, ".gitlab-ci.yml", mr["source_branch"])["content"]
    # The diff only adds the retry: every comment, the anchor and the order are as they were.
    added = [line for line in changed.splitlines() if line not in CI.splitlines()]
    assert added == [
        "  # Retried when the runner or GitLab fails, never the script (devops-agent).",
        "  retry:", "    max: 2", "    when: [runner_system_failure]"]
    assert [line for line in changed.splitlines() if line not in added] == CI.splitlines()
    lints = gl.calls(method="POST", path_re=r"/ci/lint$")
    assert len(lints) == 2 and all(c["status"] == 200 for c in lints)  # today's, then ours
    assert api(gl).ci_lint(PROJECT, changed)["valid"] is True
    assert mr["description"].count("/-/jobs/") == 3 and "```diff" in mr["description"]
    # The failure comment links the merge request once GitLab has created it.
    link = f"Merge request [!{mr['iid']}]({mr['web_url']}) proposes `retry:`"
    wait_until(lambda: link in failure_comment(gl), timeout=20, what="the comment's link")

    fail_pipeline(stack, gl, redis_client, 1304)  # the fourth failure
    wait_until(lambda: our_mrs(gl)[0]["description"].count("/-/jobs/") == 4, timeout=30,
               what="the merge request's evidence to be updated")
    assert len(our_mrs(gl)) == 1
    assert len(gl.calls(method="POST", path_re=r"/merge_requests$")) == 1
    assert len(gl.calls(method="POST", path_re=r"/repository/commits$")) == 1


def test_a_closed_mr_is_not_reopened_or_proposed_again(stack, gl, redis_client):
    for pipeline in (1401, 1402, 1403):
        fail_pipeline(stack, gl, redis_client, pipeline)
    [mr] = wait_until(lambda: our_mrs(gl), timeout=30, what="the merge request")
    api(gl).update_mr(PROJECT, mr["iid"], state_event="close")  # a person said no
    fail_pipeline(stack, gl, redis_client, 1404)
    wait_until(lambda: "No merge request changing `retry:`" in failure_comment(gl), timeout=30,
               what="the comment to say why")
    assert f"[!{mr['iid']}]" in failure_comment(gl) and "was closed on" in failure_comment(gl)
    [again] = our_mrs(gl)
    assert again["state"] == "closed"
    assert not gl.calls(method="PUT", path_re=rf"/merge_requests/{mr['iid']}$")[1:]


def test_a_code_failure_never_produces_a_merge_request(stack, gl, redis_client):
    for pipeline in (1501, 1502, 1503, 1504):
        fail_pipeline(stack, gl, redis_client, pipeline, job="unit-tests",
                      reason="script_failure", log="pytest-failure.log")
    # The fix issue is the follow-on job code failures do get: once it is there, the engine
    # has run what was asked for.
    wait_until(lambda: api(gl).find_issues(PROJECT, labels=["ci-fix-needed"]), timeout=30,
               what="the fix issue")
    assert our_mrs(gl) == []
    assert gl.calls(method="POST", path_re=r"/ci/lint$") == []
    assert "not retried: test failure" in failure_comment(gl)
