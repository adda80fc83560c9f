"""Deploys end to end: a comment or label → gates → the Kubernetes deploy service, stepped by the
real worker against the fake kube-apiserver, reported in GitLab (reply, labels, post-mortem)."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import record_key
from tests.support.hooks import note_hook
from tests.support.procs import configured_stack, deploys_settled, post_delivery, wait_until

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "fixtures" / "payloads"
PROJECT, ALICE = 15, 7
SHA = "d" * 40


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, kube, health, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    config = {
        "access": {"staging": {"min_access": "developer", "respect_freeze_periods": True}},
        "environments": {"staging": {
            "credentials": {"mode": "host", "host": kube.url, "verify_ssl": False},
            "namespace": "shop", "deployment": "web", "container": "app",
            "image": "registry.example.com/shop/web:{sha}",
            "health_checks": [{"url": health.url + "/healthz", "successes": 2, "failures": 2,
                               "timeout": 1}],
            "verification": {"interval": 0.05, "timeout": 3.0},
            "timings": {"poll_interval": 0.05, "rollout_timeout": 5.0, "api_error_retries": 3},
            "auto_deploy": {"trigger": "default_branch"},
        }},
    }
    with configured_stack(config, tmp, redis_server.client_url(), fake_gitlab_process) as stack:
        yield {"url": stack.url}


@pytest.fixture
def gl(stack, fake_gitlab_proc, kube, health, redis_client):
    fake_gitlab_proc.add_user("dev-alice", id=ALICE)
    fake_gitlab_proc.add_project("acme/shop", id=PROJECT, members={ALICE: 30})
    fake_gitlab_proc.add_issue(PROJECT, "Ship it", iid=42)
    fake_gitlab_proc.add_pipeline(PROJECT, ref="main", status="success", sha=SHA,
                                  jobs=[{"name": "build", "status": "success"}])
    if not kube.list("deployments", "shop"):
        kube.add_deployment("shop", "web", "registry.example.com/shop/web:" + "a" * 40)
    yield fake_gitlab_proc
    deploys_settled(redis_client)


def note(gl, text: str) -> dict:
    return note_hook(gl, PROJECT, 42, text, ALICE, "dev-alice")


def send(stack, redis_client, payload):
    r = post_delivery(stack["url"], orjson.dumps(payload), "Note Hook", key=str(uuid.uuid4()))
    assert r.status_code == 202, r.text
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
               timeout=30, what="the command to be processed")


def reply(fake) -> str:
    bodies = [n["body"] for n in GitLabAdapter(fake.url, fake.token).list_notes(PROJECT, "issue", 42)
              if "devops-agent:cmd" in n["body"]]
    return bodies[-1] if bodies else ""


def image(kube) -> str:
    dep = kube.get("deployments", "shop", "web")
    return dep["spec"]["template"]["spec"]["containers"][0]["image"]


def test_deploy_command_rolls_out_verifies_and_reports(stack, gl, kube, health, redis_client):
    health.set_status("/healthz", 200)
    send(stack, redis_client, note(gl, "/devops deploy staging"))
    wait_until(lambda: "✅" in reply(gl), timeout=40, what="the deploy to finish")
    assert image(kube).endswith(":" + SHA)
    assert "deploy of `staging` done" in reply(gl)
    assert reply(gl).splitlines()[1] == "> /devops deploy staging"  # still quotes the command
    labels = GitLabAdapter(gl.url, gl.token).get_issue(PROJECT, 42)["labels"]
    assert "env::staging::deployed" in labels and "env::staging::deploying" not in labels


def test_failed_health_check_rolls_back_and_files_a_postmortem(stack, gl, kube, health,
                                                               redis_client):
    health.set_status("/healthz", 200)
    before = image(kube)
    health.set_status("/healthz", 503)
    payload = note(gl, "/devops deploy staging")
    send(stack, redis_client, payload)
    wait_until(lambda: "rolled back" in reply(gl) or "❌" in reply(gl), timeout=40,
               what="the deploy to be rolled back")
    wait_until(lambda: image(kube) == before, timeout=20, what="the old image to be back")
    api = GitLabAdapter(gl.url, gl.token)
    # the verdict and the post-mortem are separate writes; the reply can land first
    issues = wait_until(lambda: api.find_issues(PROJECT, labels=["devops-agent:postmortem"]),
                        timeout=20, what="the post-mortem issue")
    assert len(issues) == 1
    body = issues[0]["description"]
    assert "What went wrong" in body and "503" in body
    wait_until(lambda: "env::staging::deploy-failed" in api.get_issue(PROJECT, 42)["labels"],
               timeout=20, what="the deploy-failed label")


def test_a_passing_default_branch_pipeline_auto_deploys_staging(stack, gl, kube, health,
                                                                 redis_client):
    health.set_status("/healthz", 200)
    gl.add_pipeline(PROJECT, id=1400, ref="main", sha="e" * 40, status="success",
                    jobs=[{"name": "build", "status": "success"}])
    payload = orjson.loads((PAYLOADS / "pipeline_success.json").read_bytes())
    payload["object_attributes"].update(id=1400, ref="main", sha="e" * 40, status="success")
    for _ in range(2):  # a resend must not deploy twice
        r = post_delivery(stack["url"], orjson.dumps(payload), "Pipeline Hook",
                          key=str(uuid.uuid4()))
        delivery_id = r.json()["delivery_id"]
        wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
                   timeout=30, what="the pipeline hook to be processed")
    wait_until(lambda: image(kube).endswith(":" + "e" * 40), timeout=40,
               what="the auto-deploy to roll out")
    deploys = [k for k in redis_client.scan_iter("da:deploy:request:auto:*")]
    assert len(deploys) == 1


def test_an_auto_deploy_during_a_freeze_is_refused(stack, gl, kube, health, redis_client):
    from tasks.platform import audit

    health.set_status("/healthz", 200)
    before = image(kube)
    gl.add_freeze_period(PROJECT, "* * * * *", "0 0 1 1 *", cron_timezone="UTC")
    gl.add_pipeline(PROJECT, id=1401, ref="main", sha="f" * 40, status="success",
                    jobs=[{"name": "build", "status": "success"}])  # pushed by a Maintainer
    payload = orjson.loads((PAYLOADS / "pipeline_success.json").read_bytes())
    payload["object_attributes"].update(id=1401, ref="main", sha="f" * 40, status="success")
    r = post_delivery(stack["url"], orjson.dumps(payload), "Pipeline Hook", key=str(uuid.uuid4()))
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
               timeout=30, what="the pipeline hook to be processed")
    assert image(kube) == before
    assert list(redis_client.scan_iter("da:deploy:request:auto:*")) == []
    [entry] = [e for e in audit.query(redis_client) if e.get("command") == "auto-deploy"]
    assert entry["outcome"] == "refused" and entry["user"] == "devops-bot (auto-deploy)"
    assert any(g["gate"] == "freeze" and not g["passed"] for g in entry["gates"])
