"""Canary: a canary Deployment beside the stable one, traffic by replica ratio, analysis at
every step, promote at 100% or abort with the canary at zero."""

from __future__ import annotations

import pytest

from tasks.deploy.requests import DeployRequest
from tests.deploy.conftest import NS, drive, env_config

V1 = "registry.example.com/shop/web:v1"
STABLE = {"app": "web", "track": "stable"}


def rollback_request(**fields) -> DeployRequest:
    return DeployRequest(action="rollback", project="42", env="staging", **fields)


@pytest.fixture
def cluster(fake):
    fake.add_deployment(NS, "web", V1, replicas=4, labels=STABLE)
    return fake


def canary_config(fake, web, **strategy):
    return env_config(fake, web,
                      strategy={"type": "canary", "initial_weight": 10, "step_weight": 30, "interval": 0.15,
                                **strategy},
                      health_checks=[{"url": web.url + "/{track}/healthz", "successes": 2, "failures": 2,
                                      "timeout": 1}])


def state(fake, name):
    dep = fake.get("deployments", NS, name)
    return dep["spec"]["template"]["spec"]["containers"][0]["image"], dep["spec"]["replicas"]


def request(sha="v2"):
    return DeployRequest(project="42", env="staging", sha=sha, requested_by="alice")


def test_steps_through_weights_and_promotes(cluster, web, reporter, make_service):
    service = make_service(canary_config(cluster, web))
    deploy_id = service.start(request())
    step = drive(service, deploy_id)
    assert step.kind == "succeeded", step
    new = "registry.example.com/shop/web:v2"
    assert state(cluster, "web") == (new, 4)
    assert state(cluster, "web-canary") == (new, 0)
    canary = cluster.get("deployments", NS, "web-canary")
    assert canary["spec"]["selector"]["matchLabels"] == {"app": "web", "track": "canary"}
    texts = reporter.texts(deploy_id)
    assert [t.split(":")[0] for t in texts if t.startswith("canary at")] == [
        "canary at 10%", "canary at 40%", "canary at 70%"]
    assert "canary at 70%: 3 canary pod(s) of 4" in texts
    assert "/canary/healthz" in web.hits


def test_failed_analysis_aborts_and_scales_canary_to_zero(cluster, web, reporter, make_service):
    web.set_status("/canary/healthz", [200, 200, 200, 500, 500])  # healthy at first, then failing
    service = make_service(canary_config(cluster, web))
    deploy_id = service.start(request(sha="v2bad"))
    assert drive(service, deploy_id).kind == "rolled_back"
    assert state(cluster, "web") == (V1, 4)
    assert state(cluster, "web-canary")[1] == 0
    (_, _title, body), = reporter.postmortems
    assert "aborted canary" in body and "HTTP 500 2 times in a row" in body


def test_promote_skips_remaining_steps(cluster, web, make_service):
    service = make_service(canary_config(cluster, web, interval=30))
    deploy_id = service.start(request())
    for _ in range(3):
        service.advance(deploy_id)
    service.promote("staging")
    assert drive(service, deploy_id, until=5).kind == "succeeded"
    assert state(cluster, "web") == ("registry.example.com/shop/web:v2", 4)


def test_rollback_requested_mid_canary(cluster, web, make_service):
    service = make_service(canary_config(cluster, web, interval=30))
    deploy_id = service.start(request())
    for _ in range(3):
        service.advance(deploy_id)
    assert service.rollback(rollback_request(requested_by="bob")) == deploy_id
    assert drive(service, deploy_id).kind == "rolled_back"
    assert state(cluster, "web") == (V1, 4) and state(cluster, "web-canary")[1] == 0


def test_canary_never_ready_aborts(cluster, web, make_service):
    cluster.image_behavior["registry.example.com/shop/web:v2"] = "deadline"
    service = make_service(canary_config(cluster, web))
    step = drive(service, service.start(request()))
    assert step.kind == "rolled_back" and "progress deadline" in step.reason
    assert state(cluster, "web") == (V1, 4)


def test_manual_rollback_after_promotion_undoes_stable(cluster, web, make_service):
    service = make_service(canary_config(cluster, web))
    assert drive(service, service.start(request())).kind == "succeeded"
    rb = service.rollback(rollback_request(requested_by="bob"))
    assert drive(service, rb).kind == "rolled_back"
    assert state(cluster, "web") == (V1, 4) and state(cluster, "web-canary")[1] == 0


def test_worker_crash_mid_canary_resumes_and_never_dips_capacity(cluster, web, make_service):
    cfg = canary_config(cluster, web)
    first = make_service(cfg)
    deploy_id = first.start(request())
    import time
    while first.get(deploy_id).phase != "canary_analyze":
        time.sleep(first.advance(deploy_id).seconds)
    second = make_service(cfg)  # the first worker is gone; a new one picks the id up
    while True:
        step = second.advance(deploy_id)
        pods = cluster.list("pods", NS, "app=web")
        ready = [p for p in pods if p["status"]["conditions"][0]["status"] == "True"]
        assert len(ready) >= 4 or step.terminal or second.get(deploy_id).phase == "canary_promote_wait"
        if step.terminal:
            break
        time.sleep(step.seconds)
    assert step.kind == "succeeded"
    assert state(cluster, "web") == ("registry.example.com/shop/web:v2", 4)
    assert state(cluster, "web-canary")[1] == 0
