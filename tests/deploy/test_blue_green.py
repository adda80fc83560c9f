"""Blue-green: verify the idle colour before any traffic moves, switch the Service selector,
keep the old colour, flip back; never point the selector at a colour that is not ready."""

from __future__ import annotations

import time

import pytest

from tasks.deploy.requests import DeployRequest
from tests.deploy.conftest import NS, drive, env_config

V1 = "registry.example.com/shop/web:v1"


def rollback_request(**fields) -> DeployRequest:
    return DeployRequest(action="rollback", project="42", env="staging", **fields)


@pytest.fixture
def cluster(fake):
    fake.add_deployment(NS, "web-blue", V1, replicas=3, labels={"app": "web", "color": "blue"})
    fake.add_deployment(NS, "web-green", V1, replicas=0, labels={"app": "web", "color": "green"})
    fake.add_service(NS, "web", {"app": "web", "color": "blue"})
    return fake


def bg_config(fake, web, **strategy):
    return env_config(fake, web, strategy={"type": "blue_green", "service": "web", **strategy},
                      health_checks=[{"url": web.url + "/{color}/healthz", "successes": 2, "failures": 2,
                                      "timeout": 1}])


def selector(fake):
    return fake.get("services", NS, "web")["spec"]["selector"]


def image(fake, name):
    dep = fake.get("deployments", NS, name)
    return dep["spec"]["template"]["spec"]["containers"][0]["image"], dep["spec"]["replicas"]


def request(sha="v2"):
    return DeployRequest(project="42", env="staging", sha=sha, requested_by="alice")


def test_switches_after_idle_colour_passes(cluster, web, reporter, make_service):
    service = make_service(bg_config(cluster, web))
    deploy_id = service.start(request())
    step = drive(service, deploy_id)
    assert step.kind == "succeeded", step
    assert selector(cluster) == {"app": "web", "color": "green"}
    assert image(cluster, "web-green") == ("registry.example.com/shop/web:v2", 3)
    assert image(cluster, "web-blue") == (V1, 3)  # kept for instant rollback
    assert "/green/healthz" in web.hits and "/blue/healthz" not in web.hits
    # the switch is a JSON patch with a `test` op: a compare-and-swap on the selector
    assert ("PATCH", f"/api/v1/namespaces/{NS}/services/web",
            "application/json-patch+json") in cluster.requests
    assert service.status("staging").live["color"] == "green"

    # instant rollback: flip back to blue, which still runs v1
    rb = service.rollback(rollback_request(requested_by="bob"))
    assert drive(service, rb).kind == "rolled_back"
    assert selector(cluster)["color"] == "blue"


def test_failing_idle_colour_never_gets_traffic(cluster, web, reporter, make_service):
    web.set_status("/green/healthz", 500)
    service = make_service(bg_config(cluster, web))
    deploy_id = service.start(request(sha="broken"))
    assert drive(service, deploy_id).kind == "rolled_back"
    assert selector(cluster)["color"] == "blue"
    assert image(cluster, "web-green")[1] == 0
    (_, _title, body), = reporter.postmortems
    assert "HTTP 500 2 times in a row" in body and "traffic never left blue" in body


def test_failure_after_switch_flips_back(cluster, web, reporter, make_service):
    web.set_status("/green/healthz", [200, 200, 500, 500])  # fine before the switch, not after
    service = make_service(bg_config(cluster, web))
    deploy_id = service.start(request(sha="v2"))
    assert drive(service, deploy_id).kind == "rolled_back"
    assert selector(cluster)["color"] == "blue"
    body = reporter.postmortems[0][2]
    assert "traffic switched: service web now selects green" in body
    assert "traffic switched back to blue" in body


def test_manual_switch_waits_for_promote(cluster, web, make_service):
    service = make_service(bg_config(cluster, web, switch_traffic="manual"))
    deploy_id = service.start(request())
    step = drive(service, deploy_id)
    assert step.kind == "paused" and "promote" in step.reason
    assert selector(cluster)["color"] == "blue"
    assert service.advance(deploy_id).kind == "paused"
    service.promote(deploy_id)
    assert drive(service, deploy_id).kind == "succeeded"
    assert selector(cluster)["color"] == "green"


def test_manual_switch_refused_when_idle_colour_went_bad(cluster, web, reporter, make_service):
    service = make_service(bg_config(cluster, web, switch_traffic="manual"))
    deploy_id = service.start(request())
    assert drive(service, deploy_id).kind == "paused"
    cluster.image_behavior["registry.example.com/shop/web:v2"] = "never_ready"
    # someone restarts green meanwhile: its new pods never become ready
    with cluster.lock:
        for pod in cluster.list("pods", NS, "color=green"):
            cluster.objects.pop(("pods", NS, pod["metadata"]["name"]))
    time.sleep(0.1)
    service.promote("staging")
    step = drive(service, deploy_id)
    assert step.kind == "rolled_back" and "refusing to switch traffic to green" in step.reason
    assert selector(cluster)["color"] == "blue"


def test_rollback_while_paused_drops_the_idle_colour(cluster, web, make_service):
    service = make_service(bg_config(cluster, web, switch_traffic="manual"))
    deploy_id = service.start(request())
    assert drive(service, deploy_id).kind == "paused"
    assert service.rollback(rollback_request(requested_by="bob")) == deploy_id
    assert drive(service, deploy_id).kind == "rolled_back"
    assert selector(cluster)["color"] == "blue" and image(cluster, "web-green")[1] == 0


def test_worker_crash_while_idle_colour_is_not_ready(cluster, web, make_service):
    """A new worker resumes; the selector never points at the not-ready colour."""
    cluster.image_behavior["registry.example.com/shop/web:v2"] = "never_ready"
    cfg = bg_config(cluster, web)
    cfg = cfg.model_copy(update={"timings": cfg.timings.model_copy(update={"rollout_timeout": 0.5})})
    first = make_service(cfg)
    deploy_id = first.start(request())
    first.advance(deploy_id)
    first.advance(deploy_id)
    assert first.get(deploy_id).phase == "bg_rollout"
    second = make_service(cfg)  # the first worker is gone
    seen = []
    while True:
        step = second.advance(deploy_id)
        seen.append(selector(cluster)["color"])
        if step.terminal:
            break
        time.sleep(step.seconds)
    assert step.kind == "rolled_back" and "rollout timeout" in step.reason
    assert set(seen) == {"blue"}


def test_crash_right_after_the_switch_resumes_switched(cluster, web, make_service, monkeypatch):
    cfg = bg_config(cluster, web)
    first = make_service(cfg)
    deploy_id = first.start(request())
    kube = first._kube(cfg)
    real_switch = kube.set_service_selector

    def switch_then_die(*args, **kwargs):
        real_switch(*args, **kwargs)
        raise SystemExit("worker killed right after the selector patch")
    monkeypatch.setattr(kube, "set_service_selector", switch_then_die)
    with pytest.raises(SystemExit):
        drive(first, deploy_id)
    assert selector(cluster)["color"] == "green"                    # the patch went out...
    assert first.get(deploy_id).phase in ("bg_rollout", "bg_verify")  # ...the record did not move
    second = make_service(cfg)
    assert drive(second, deploy_id).kind == "succeeded"
    assert selector(cluster)["color"] == "green"
    switches = [r for r in cluster.requests if r[0] == "PATCH" and r[1].endswith("/services/web")]
    assert len(switches) == 1  # the new worker saw the switch done and did not repeat it


def test_named_revision_is_refused_for_blue_green(cluster, web, make_service):
    from tasks.deploy.model import DeployError
    service = make_service(bg_config(cluster, web))
    with pytest.raises(DeployError, match="other colour"):
        service.rollback(rollback_request(requested_by="bob", revision=2))


def _ready(fake, name):
    dep = fake.objects[("deployments", NS, name)]
    return dep["spec"]["replicas"], (dep.get("status") or {}).get("readyReplicas", 0)


@pytest.mark.parametrize("down_to", [0, 1])
def test_flip_back_restores_the_old_colours_size_first(cluster, web, make_service, down_to):
    seen = {}

    def autoscaler(fake, plural, ns, name):  # scales blue down as soon as traffic leaves it
        if (plural, name) != ("services", "web"):
            return
        colour = fake.objects[("services", NS, "web")]["spec"]["selector"]["color"]
        if colour == "green" and "down" not in seen:
            seen["down"] = True
            fake.scale(NS, "web-blue", down_to)
        elif colour == "blue" and "down" in seen:
            seen["back"] = _ready(fake, "web-blue")

    cluster.on_write(autoscaler)
    web.set_status("/green/healthz", [200, 200, 500, 500])  # fine before the switch, not after
    service = make_service(bg_config(cluster, web))
    deploy_id = service.start(request(sha="v2"))
    assert drive(service, deploy_id).kind == "rolled_back"
    assert seen["back"] == (3, 3)  # blue was back at full size, all ready, when traffic returned
    assert service.get(deploy_id).data["live_replicas"] == 3
    assert any(f"blue was scaled down to {down_to}; scaling it back to 3" in t
               for _, t in service.get(deploy_id).timeline)


def test_manual_rollback_brings_the_other_colour_to_the_live_size(cluster, web, make_service):
    service = make_service(bg_config(cluster, web))
    assert drive(service, service.start(request(sha="v2"))).kind == "succeeded"  # green live, 3
    cluster.scale(NS, "web-blue", 1)  # someone trimmed the standby colour
    seen = {}
    cluster.on_write(lambda fake, plural, ns, name: seen.setdefault("back", _ready(fake, "web-blue"))
                     if (plural, name) == ("services", "web") else None)
    rb = service.rollback(rollback_request(requested_by="bob"))
    assert drive(service, rb).kind == "rolled_back"
    assert seen["back"] == (3, 3) and selector(cluster)["color"] == "blue"


def test_rollback_to_the_colour_that_failed_needs_force(cluster, web, make_service):
    from tasks.deploy.model import DeployError

    web.set_status("/green/healthz", [200, 200, 500, 500])
    service = make_service(bg_config(cluster, web))
    assert drive(service, service.start(request(sha="v2"))).kind == "rolled_back"
    assert selector(cluster)["color"] == "blue"  # green still runs v2, which failed after the switch
    with pytest.raises(DeployError, match=r"green runs registry.example.com/shop/web:v2, which failed "
                                          r"its checks here .*--force"):
        service.rollback(rollback_request(requested_by="bob"))
    assert selector(cluster)["color"] == "blue"
