"""Every strategy's failure path reported in GitLab: the deployer as the worker builds it (real
runtime, real Redis), the real kubernetes client against the fake API server, the GitLab adapter
against the fake GitLab. Health fails → rolled back → post-mortem issue, reply, labels, and the
GitLab deployment record marked failed; success → deployed label and a successful record."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from tasks.config.settings import load_settings
from tasks.deploy.driver import KubeDeployer, advance_deploy, step_member
from tasks.deploy.requests import DeployRequest
from tasks.engine.schedule import FINISHED
from tasks.gitlab.client import GitLabAdapter
from tasks.wiring.runtime import build_runtime
from tests.deploy.conftest import FAST, NS

V1 = "registry.example.com/shop/web:v1"
STRATEGIES = {
    "rolling": ({"type": "rolling"}, "/healthz"),
    "blue_green": ({"type": "blue_green", "service": "web"}, "/{color}/healthz"),
    "canary": ({"type": "canary", "initial_weight": 10, "step_weight": 30, "interval": 0.1},
               "/{track}/healthz"),
}


def seed_cluster(fake, strategy):
    if strategy == "blue_green":
        fake.add_deployment(NS, "web-blue", V1, replicas=3, labels={"app": "web", "color": "blue"})
        fake.add_deployment(NS, "web-green", V1, replicas=0, labels={"app": "web", "color": "green"})
        fake.add_service(NS, "web", {"app": "web", "color": "blue"})
    elif strategy == "canary":
        fake.add_deployment(NS, "web", V1, replicas=4, labels={"app": "web", "track": "stable"})
    else:
        fake.add_deployment(NS, "web", V1, replicas=2)


# The runtime each deployer was built by: the engine's task takes the runtime, as in a worker.
RUNTIME_OF: dict[int, Any] = {}


def make_deployer(tmp_path, redis_server, fake, web, gl, strategy, **strategy_options):
    spec, health_path = STRATEGIES[strategy]
    spec = {**spec, **strategy_options}
    config = {
        "gitlab_deployments": True,
        "access": {"staging": {"min_access": "developer"}},
        "environments": {"staging": {
            "credentials": {"mode": "host", "host": fake.url, "verify_ssl": False},
            "namespace": NS, "deployment": "web", "container": "app",
            "image": "registry.example.com/shop/web:{sha}", "strategy": spec,
            "health_checks": [{"url": web.url + health_path, "successes": 2, "failures": 2,
                               "timeout": 1}],
            "verification": {"interval": 0.03, "timeout": 2.0}, "timings": FAST}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings({"REDIS_URL": redis_server.client_url(), "GITLAB_URL": gl.url,
                              "GITLAB_TOKEN": gl.token, "DEVOPS_AGENT_CONFIG": str(path)},
                             require_secret=False)
    rt = build_runtime(settings)  # as a worker process builds it
    deployer = rt.adapter("deployer")
    assert isinstance(deployer, KubeDeployer)
    RUNTIME_OF[id(deployer)] = rt
    return deployer


def run_to_end(deployer, deploy_id, until=20.0):
    deadline = time.monotonic() + until
    # The engine's work for the deploy, called as the worker's task would be when it is due.
    while deployer.schedule.state(step_member(deploy_id)).get("status") not in FINISHED:
        assert time.monotonic() < deadline, "deploy did not finish"
        advance_deploy(RUNTIME_OF[id(deployer)], deploy_id)
        time.sleep(0.02)


def submit(deployer, sha):
    return deployer.submit(DeployRequest(
        project=15, env="staging", action="deploy", ref="main", sha=sha, requested_by="alice",
        reply_to=("issue", 42, "cmd:1:0"), request_id=f"test:{sha}"))


@pytest.fixture
def gl(fake_gitlab):
    fake_gitlab.add_project("acme/shop", id=15)
    fake_gitlab.add_issue(15, "Ship it", iid=42, labels=["env::staging::deploying"])
    return fake_gitlab


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_failed_health_rolls_back_and_reports_in_gitlab(strategy, tmp_path, redis_server,
                                                        redis_client, fake, web, gl):
    seed_cluster(fake, strategy)
    for path in ("/healthz", "/green/healthz", "/canary/healthz"):
        web.set_status(path, 503)
    deployer = make_deployer(tmp_path, redis_server, fake, web, gl, strategy)
    ticket = submit(deployer, "bad" + strategy)
    assert ticket.status == "queued", ticket
    run_to_end(deployer, ticket.deploy_id)
    api = GitLabAdapter(gl.url, gl.token)
    [postmortem] = api.find_issues(15, labels=["devops-agent:postmortem"])
    assert "What went wrong" in postmortem["description"] and "503" in postmortem["description"]
    replies = [n["body"] for n in api.list_notes(15, "issue", 42)]
    assert any(f"#{postmortem['iid']}" in r for r in replies)
    labels = api.get_issue(15, 42)["labels"]
    assert "env::staging::deploy-failed" in labels and "env::staging::deploying" not in labels
    [record] = [c for c in gl.calls(method="PUT", path_re=r"/deployments/\d+$")]
    assert record["json"]["status"] == "failed"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_success_is_reported_once(strategy, tmp_path, redis_server, redis_client, fake, web, gl):
    seed_cluster(fake, strategy)
    deployer = make_deployer(tmp_path, redis_server, fake, web, gl, strategy)
    ticket = submit(deployer, "good" + strategy)
    assert submit(deployer, "good" + strategy).deploy_id == ticket.deploy_id  # resubmitted: same
    run_to_end(deployer, ticket.deploy_id)
    api = GitLabAdapter(gl.url, gl.token)
    assert "env::staging::deployed" in api.get_issue(15, 42)["labels"]
    assert api.find_issues(15, labels=["devops-agent:postmortem"]) == []
    assert len(gl.calls(method="POST", path_re=r"/deployments$")) == 1
    [record] = gl.calls(method="PUT", path_re=r"/deployments/\d+$")
    assert record["json"]["status"] == "success"


def test_a_promote_gets_its_own_reply_and_the_paused_deploy_its_verdict(tmp_path, redis_server,
                                                                      redis_client, fake, web, gl):
    """Blue-green with a manual switch: the deploy pauses (its reply says how to go on, its
    issue keeps `deploying`), a promote from another issue lets it go on, and each reply ends
    with its own verdict and label."""
    seed_cluster(fake, "blue_green")
    gl.add_issue(15, "Go live", iid=43)
    deployer = make_deployer(tmp_path, redis_server, fake, web, gl, "blue_green",
                             switch_traffic="manual")
    ticket = submit(deployer, "v2")
    run_to_end(deployer, ticket.deploy_id)  # paused: the engine item is done until someone answers
    api = GitLabAdapter(gl.url, gl.token)

    def body(iid):
        return next(n["body"] for n in api.list_notes(15, "issue", iid) if "devops-agent:" in n["body"])
    assert "⏸️ deploy of `staging` is waiting" in body(42) and "`/devops promote staging`" in body(42)
    assert api.get_issue(15, 42)["labels"] == ["env::staging::deploying"]
    promoted = deployer.submit(DeployRequest(
        project=15, env="staging", action="promote", requested_by="carol",
        reply_to=("issue", 43, "cmd:2:0"), request_id="15:issue:43:cmd:2:0"))
    assert promoted.status == "queued" and promoted.deploy_id == ticket.deploy_id
    run_to_end(deployer, ticket.deploy_id)
    assert "✅ deploy of `staging` done" in body(42)
    assert "@carol" not in body(42)
    assert "✅ promote of `staging` done" in body(43)
    assert api.get_issue(15, 42)["labels"] == ["env::staging::deployed"]
    assert api.get_issue(15, 43)["labels"] == ["env::staging::deployed"]
    late = deployer.submit(DeployRequest(  # nothing waits any more: refused, nothing joins
        project=15, env="staging", action="promote", requested_by="carol",
        request_id="15:issue:43:cmd:3:0"))
    assert (late.status, late.detail) == ("refused", "nothing is deploying to staging")


def test_a_rollback_during_a_deploy_cancels_its_gitlab_deployment(tmp_path, redis_server,
                                                                  redis_client, fake, web, gl):
    seed_cluster(fake, "rolling")
    fake.image_behavior["registry.example.com/shop/web:slow"] = "never_ready"
    gl.add_issue(15, "Broken checkout", iid=43)
    deployer = make_deployer(tmp_path, redis_server, fake, web, gl, "rolling")
    ticket = submit(deployer, "slow")
    # The image is patched; its pods never get ready.
    advance_deploy(RUNTIME_OF[id(deployer)], ticket.deploy_id)
    rollback = deployer.submit(DeployRequest(
        project=15, env="staging", action="rollback", requested_by="bob",
        reply_to=("issue", 43, "cmd:2:0"), request_id="15:issue:43:cmd:2:0"))
    assert rollback.deploy_id == ticket.deploy_id and "was asked to abort" in rollback.detail
    run_to_end(deployer, ticket.deploy_id)
    api = GitLabAdapter(gl.url, gl.token)

    def body(iid):
        return next(n["body"] for n in api.list_notes(15, "issue", iid) if "devops-agent:" in n["body"])
    assert "⏹️ deploy of `staging` aborted by @bob for a rollback" in body(42)
    assert "✅ rollback of `staging` done" in body(43) and "was aborted and undone" in body(43)
    [record] = gl.calls(method="PUT", path_re=r"/deployments/\d+$")
    assert record["json"]["status"] == "canceled"
    assert api.find_issues(15, labels=["devops-agent:postmortem"]) == []  # asked for: no post-mortem
