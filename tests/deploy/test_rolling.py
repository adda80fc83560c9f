"""Rolling strategy: success, failed health check -> automatic rollback, rollout failures,
manual rollbacks, the environment lock, and a worker crash mid-rollout."""

from __future__ import annotations

import pytest

from tasks.deploy.model import DeployError, DeployLocked
from tasks.deploy.requests import DeployRequest
from tests.deploy.conftest import NS, drive, env_config

V1 = "registry.example.com/shop/web:v1"


def rollback_request(**fields) -> DeployRequest:
    return DeployRequest(action="rollback", project="42", env="staging", **fields)


def image_of(fake, name="web"):
    return fake.get("deployments", NS, name)["spec"]["template"]["spec"]["containers"][0]["image"]


def request(sha="abc123", env="staging", who="alice"):
    return DeployRequest(project="42", env=env, sha=sha, requested_by=who, ref="main")


def test_success_sets_image_strategy_and_waits_for_rollout(fake, web, reporter, make_service):
    fake.add_deployment(NS, "web", V1, replicas=4)
    service = make_service(env_config(fake, web, strategy={"type": "rolling", "max_surge": 1,
                                                           "max_unavailable": 0}))
    deploy_id = service.start(request())
    step = drive(service, deploy_id)
    assert step.kind == "succeeded", step
    dep = fake.get("deployments", NS, "web")
    assert image_of(fake) == "registry.example.com/shop/web:abc123"
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert dep["status"]["updatedReplicas"] == 4 and dep["status"]["availableReplicas"] == 4
    # the client sent a strategic merge patch (dict body) and the health endpoint was probed
    assert ("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web",
            "application/strategic-merge-patch+json") in fake.requests
    assert web.hits.count("/healthz") >= 2
    assert reporter.verdicts[-1][0] == deploy_id and "succeeded" in reporter.verdicts[-1][1]
    assert not reporter.postmortems
    # the lock is released: the next deploy may start
    assert service.status("staging", project="42").locked_by is None
    service.start(request(sha="def456"))


def test_failed_health_check_rolls_back_with_postmortem(fake, web, reporter, make_service):
    fake.add_deployment(NS, "web", V1, replicas=3)
    web.set_status("/healthz", 503)
    service = make_service(env_config(fake, web))
    deploy_id = service.start(request(sha="bad1"))
    step = drive(service, deploy_id)
    assert step.kind == "rolled_back", step
    assert image_of(fake) == V1
    dep = fake.get("deployments", NS, "web")
    # kubectl undo semantics: the old ReplicaSet becomes the newest revision (3)
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert ("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web",
            "application/json-patch+json") in fake.requests
    (pm_id, title, body), = reporter.postmortems
    assert pm_id == deploy_id and "rolled back automatically" in title
    assert "registry.example.com/shop/web:bad1" in body and V1 in body
    assert "HTTP 503 2 times in a row" in body
    assert "What went wrong?" in body and "How do we prevent it?" in body
    assert "rolling back web to revision 1" in body
    assert service.status("staging", project="42").locked_by is None


def test_progress_deadline_exceeded_rolls_back(fake, web, reporter, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    fake.image_behavior["registry.example.com/shop/web:stuck"] = "deadline"
    service = make_service(env_config(fake, web))
    step = drive(service, service.start(request(sha="stuck")))
    assert step.kind == "rolled_back"
    assert "exceeded its progress deadline" in step.reason
    assert image_of(fake) == V1
    assert "exceeded its progress deadline" in reporter.postmortems[0][2]


def test_rollout_timeout_rolls_back(fake, web, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    fake.image_behavior["registry.example.com/shop/web:slow"] = "never_ready"
    cfg = env_config(fake, web, timings={"poll_interval": 0.03, "rollout_timeout": 0.4})
    service = make_service(cfg)
    step = drive(service, service.start(request(sha="slow")))
    assert step.kind == "rolled_back" and "rollout timeout" in step.reason
    assert image_of(fake) == V1


def test_missing_deployment_fails_without_rollback(fake, web, reporter, make_service):
    service = make_service(env_config(fake, web))
    step = drive(service, service.start(request()))
    assert step.kind == "failed"
    assert '404' in step.reason and 'deployments.apps "web" not found' in step.reason
    assert not reporter.postmortems
    assert service.status("staging", project="42").locked_by is None


def test_transient_api_errors_are_retried(fake, web, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    fake.inject_error("PATCH", r"/deployments/web$", 500, count=1)
    fake.inject_error("GET", r"/deployments/web/status$", 409, count=1)
    service = make_service(env_config(fake, web))
    deploy_id = service.start(request())
    assert drive(service, deploy_id).kind == "succeeded"
    timeline = " ".join(t for _, t in service.get(deploy_id).timeline)
    assert "500" in timeline and "retrying" in timeline


def test_lock_refuses_a_concurrent_deploy(fake, web, make_service):
    fake.add_deployment(NS, "web", V1)
    service = make_service(env_config(fake, web))
    first = service.start(request(who="alice"))
    with pytest.raises(DeployLocked) as err:
        service.start(request(sha="other", who="bob"))
    assert err.value.holder_id == first and "alice" in str(err.value)
    with pytest.raises(DeployLocked):
        make_service(env_config(fake, web)).start(request(sha="third"))  # another worker, same answer
    # another project may deploy its own "staging" at the same time
    service.start(DeployRequest(project="43", env="staging", sha="x", requested_by="carol"))
    drive(service, first)
    service.start(request(sha="next", who="bob"))


def test_lock_has_a_ttl_and_a_stale_deploy_yields(fake, web, redis_client, make_service):
    fake.add_deployment(NS, "web", V1)
    service = make_service(env_config(fake, web), lock_ttl=0.3)
    stale = service.start(request())
    ttl = redis_client.pttl("da:deploy:lock:42:staging")
    assert 0 < ttl <= 300
    import time
    time.sleep(0.4)  # the worker "crashed" and nobody advanced: the lock expired
    newer = service.start(request(sha="newer", who="bob"))
    step = service.advance(stale)
    assert step.kind == "failed" and newer in step.reason
    assert redis_client.get("da:deploy:lock:42:staging").decode() == newer


def test_manual_rollback_to_previous_and_named_revision(fake, web, reporter, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    service = make_service(env_config(fake, web))
    for sha in ("v2", "v3"):
        assert drive(service, service.start(request(sha=sha))).kind == "succeeded"
    assert image_of(fake).endswith(":v3")

    rb = service.rollback(rollback_request(requested_by="alice", reason="bad v3"))
    step = drive(service, rb)
    assert step.kind == "rolled_back" and step.reason.endswith("(revision 2)")
    assert image_of(fake).endswith(":v2")
    assert not reporter.postmortems  # asked for, not automatic: no post-mortem

    rb = service.rollback(rollback_request(requested_by="alice", revision=1))
    assert drive(service, rb).kind == "rolled_back"
    assert image_of(fake) == V1
    rs = fake.list("replicasets", NS, "app=web")
    assert len(rs) == 3  # rollbacks re-use ReplicaSets, they do not create new ones

    # nothing changes for a revision that does not exist: refused, with what each one ran
    with pytest.raises(DeployError,
                       match=r"no revision 99\. Revisions: 5 `[^`]+:v1` \(current\); 4 `[^`]+:v2`"):
        service.rollback(rollback_request(requested_by="alice", revision=99))
    assert service.status("staging", project="42").locked_by is None


def test_rollback_request_during_a_deploy_aborts_it(fake, web, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    web.set_status("/healthz", 200)
    service = make_service(env_config(fake, web))
    deploy_id = service.start(request(sha="v2"))
    service.advance(deploy_id)  # image set, rolling
    rb = service.rollback(rollback_request(requested_by="bob"))
    assert rb == deploy_id
    step = drive(service, deploy_id)
    assert step.kind == "rolled_back" and "requested by bob" in step.reason
    assert image_of(fake) == V1


def test_worker_crash_mid_rollout_resumes_from_persisted_state(fake, web, reporter, make_service):
    fake.add_deployment(NS, "web", V1, replicas=4)
    fake.ready_after = 0.15
    first_worker = make_service(env_config(fake, web))
    deploy_id = first_worker.start(request(sha="v2"))
    assert first_worker.advance(deploy_id).kind == "wait"
    assert first_worker.get(deploy_id).phase == "rollout"
    # the worker dies here; a new process builds everything from scratch and goes on
    new_worker = make_service(env_config(fake, web))
    assert drive(new_worker, deploy_id).kind == "succeeded"
    assert image_of(fake).endswith(":v2")
    # the re-run phase did not create a second revision
    annotations = fake.get("deployments", NS, "web")["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "2"


def test_crash_between_patch_and_save_is_idempotent(fake, web, make_service, monkeypatch):
    fake.add_deployment(NS, "web", V1, replicas=2)
    service = make_service(env_config(fake, web))
    deploy_id = service.start(request(sha="v2"))

    def die(_rec):
        raise SystemExit("worker killed")
    monkeypatch.setattr(service, "_save", die)
    with pytest.raises(SystemExit):
        service.advance(deploy_id)  # the image patch went out; the record still says "init"
    assert service.get(deploy_id).phase == "init"
    again = make_service(env_config(fake, web))
    assert drive(again, deploy_id).kind == "succeeded"
    assert fake.get("deployments", NS, "web")["metadata"]["generation"] == 2


def test_inconclusive_prometheus_pauses_then_promote(fake, web, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    cfg = env_config(fake, web, prometheus=[{
        "name": "error_rate", "url": web.url, "threshold": 0.05,
        "query": 'sum(rate(http_errors{deployment="{deployment}"}[5m]))',
        "sample_query": 'sum(increase(http_requests{deployment="{deployment}"}[5m]))', "min_samples": 100}])
    web.set_metric("http_errors", 0.5)     # would fail...
    web.set_metric("http_requests", 3)     # ...but 3 requests are too few to judge
    service = make_service(cfg)
    deploy_id = service.start(request(sha="v2"))
    step = drive(service, deploy_id)
    assert step.kind == "paused" and "only 3 samples" in step.reason
    assert service.advance(deploy_id).kind == "paused"  # stays paused until asked
    assert service.promote("staging") == deploy_id
    assert drive(service, deploy_id).kind == "succeeded"


def test_prometheus_threshold_breach_rolls_back(fake, web, reporter, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    cfg = env_config(fake, web, prometheus=[{
        "name": "p95_latency_seconds", "url": web.url, "threshold": 0.5,
        "query": 'histogram_quantile(0.95, sum by (le) '
                 '(rate(latency_bucket{deployment="{deployment}"}[5m])))',
        "sample_query": 'sum(increase(http_requests{deployment="{deployment}"}[5m]))', "min_samples": 100}])
    web.set_metric("latency_bucket", 1.8)
    web.set_metric("http_requests", 2500)
    service = make_service(cfg)
    deploy_id = service.start(request(sha="slowv2"))
    assert drive(service, deploy_id).kind == "rolled_back"
    body = reporter.postmortems[0][2]
    assert "p95_latency_seconds = 1.8 (threshold < 0.5, 2500 samples)" in body
    assert image_of(fake) == V1


def test_status_reports_lock_active_last_and_live(fake, web, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    service = make_service(env_config(fake, web))
    idle = service.status("staging")
    assert idle.locked_by is None and idle.active is None and idle.last is None
    assert idle.live["image"] == V1 and idle.live["revision"] == 1 and idle.live["ready"] == 2
    deploy_id = service.start(request(sha="v2"))
    busy = service.status("staging")
    assert busy.project == "42" and busy.locked_by == deploy_id and busy.active.image.endswith(":v2")
    drive(service, deploy_id)
    done = service.status("staging", project="42")
    assert done.locked_by is None and done.last.id == deploy_id and done.last.status == "succeeded"
    assert done.live["image"].endswith(":v2") and "successfully rolled out" in done.live["rollout"]


def test_two_workers_never_run_the_same_step(fake, web, redis_client, make_service):
    fake.add_deployment(NS, "web", V1)
    service = make_service(env_config(fake, web))
    deploy_id = service.start(request())
    redis_client.set(f"da:deploy:step:{deploy_id}", "other-worker", px=5000)
    step = service.advance(deploy_id)
    assert step.kind == "wait" and service.get(deploy_id).phase == "init"
    redis_client.delete(f"da:deploy:step:{deploy_id}")
    assert drive(service, deploy_id).kind == "succeeded"
    assert service.advance(deploy_id).kind == "succeeded"  # a late duplicate is harmless


def test_a_broken_reporter_does_not_break_the_deploy(fake, web, redis_client):
    from tasks.deploy.kube import Kube
    from tasks.deploy.service import DeployService

    class Broken:
        def progress(self, deploy, text):
            raise RuntimeError("GitLab is down")
        verdict = postmortem = progress

    fake.add_deployment(NS, "web", V1)
    cfg = env_config(fake, web)
    service = DeployService(redis_client, {"staging": cfg}, Broken(),
                            kube_factory=lambda c: Kube.from_host(fake.url, request_timeout=2))
    assert drive(service, service.start(request())).kind == "succeeded"


def test_unknown_environment_and_deploy(fake, web, make_service):
    from tasks.deploy.model import DeployError, DeployNotFound
    service = make_service(env_config(fake, web))
    with pytest.raises(DeployError, match="unknown environment 'prod'"):
        service.start(request(env="prod"))
    with pytest.raises(DeployNotFound):
        service.advance("staging-nope")
    with pytest.raises(DeployNotFound, match="nothing is deploying to staging"):
        service.promote("staging")


def test_a_lapsed_deploy_does_not_resume_over_a_newer_one(fake, web, redis_client, make_service):
    import time
    fake.add_deployment(NS, "web", V1)
    service = make_service(env_config(fake, web), lock_ttl=0.3)
    stale = service.start(request(sha="old"))
    time.sleep(0.4)
    newer = service.start(request(sha="new", who="bob"))
    assert drive(service, newer).kind == "succeeded"
    step = service.advance(stale)  # the lock is free again, but a newer deploy has finished
    assert step.kind == "failed" and f"superseded by {newer}" in step.reason
    assert image_of(fake).endswith(":new")
    assert redis_client.get("da:deploy:lock:42:staging") is None


def test_a_paused_deploy_holds_its_lock_longer(fake, web, redis_client, make_service):
    fake.add_deployment(NS, "web", V1)
    cfg = env_config(fake, web, prometheus=[{"name": "errors", "url": web.url, "query": "errors",
                                             "threshold": 0.1}])  # no data: inconclusive
    service = make_service(cfg, lock_ttl=5)
    deploy_id = service.start(request())
    assert drive(service, deploy_id).kind == "paused"
    assert redis_client.pttl("da:deploy:lock:42:staging") > 3600 * 1000


def test_crash_right_after_the_image_patch_still_rolls_back_to_the_old_image(fake, web, make_service,
                                                                          monkeypatch):
    fake.add_deployment(NS, "web", V1, replicas=2)
    web.set_status("/healthz", 500)
    cfg = env_config(fake, web)
    first = make_service(cfg)
    deploy_id = first.start(request(sha="bad"))
    kube = first._kube(cfg)
    real_patch = kube.patch_deployment

    def patch_then_die(*args, **kwargs):
        real_patch(*args, **kwargs)
        raise SystemExit("worker killed right after the image patch")
    monkeypatch.setattr(kube, "patch_deployment", patch_then_die)
    with pytest.raises(SystemExit):
        first.advance(deploy_id)
    assert image_of(fake).endswith(":bad") and first.get(deploy_id).phase == "init"
    step = drive(make_service(cfg), deploy_id)
    assert step.kind == "rolled_back"
    assert image_of(fake) == V1


def test_persistent_api_errors_give_up_and_roll_back(fake, web, reporter, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    fake.inject_error("GET", r"/deployments/web/status$", 500, count=4)  # retries: 3, then give up
    service = make_service(env_config(fake, web))
    deploy_id = service.start(request(sha="v2"))
    step = drive(service, deploy_id)
    assert step.kind == "rolled_back" and "Kubernetes API error" in step.reason and "500" in step.reason
    assert image_of(fake) == V1
    timeline = [t for _, t in service.get(deploy_id).timeline]
    assert sum("retrying" in t for t in timeline) == 3


def test_api_errors_during_the_rollback_fail_loudly(fake, web, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    fake.inject_error("GET", r"/deployments/web/status$", 500, count=1000)
    service = make_service(env_config(fake, web))
    step = drive(service, service.start(request(sha="v2")))
    assert step.kind == "failed"
    assert step.reason.startswith("automatic rollback failed") and "first failure" in step.reason
    assert service.status("staging", project="42").locked_by is None


def test_rollback_to_a_revision_that_failed_its_checks_needs_force(fake, web, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    service = make_service(env_config(fake, web))
    assert drive(service, service.start(request(sha="v2"))).kind == "succeeded"      # revision 2
    web.set_status("/healthz", 503)
    assert drive(service, service.start(request(sha="bad"))).kind == "rolled_back"   # 3, undone
    web.set_status("/healthz", 200)
    # revision 2's template came back as revision 4: "the previous revision" is now 3, the bad one
    with pytest.raises(DeployError) as refused:
        service.rollback(rollback_request(requested_by="bob"))
    text = str(refused.value)
    assert "revision 3 runs registry.example.com/shop/web:bad, which failed its checks here" in text
    assert "HTTP 503" in text and '--force "reason"' in text
    assert "`rollback staging 1` goes to the newest one that did not fail" in text
    assert "3 `registry.example.com/shop/web:bad` (failed its checks in deploy staging-" in text
    assert service.status("staging", project="42").locked_by is None  # nothing was started
    assert image_of(fake).endswith(":v2")

    rb = service.rollback(rollback_request(requested_by="bob", force=True))
    assert "forced past its failed checks" in service.get(rb).timeline[0][1]
    assert drive(service, rb).kind == "rolled_back"
    assert image_of(fake).endswith(":bad")
    assert set(service.failed_images("42", "staging")) == {"registry.example.com/shop/web:bad"}
    # a later deploy of that image that passes its checks clears it
    assert drive(service, service.start(request(sha="bad"))).kind == "succeeded"
    assert service.failed_images("42", "staging") == {}


def test_promote_with_nothing_waiting_is_refused(fake, web, make_service):
    fake.add_deployment(NS, "web", V1, replicas=2)
    fake.image_behavior["registry.example.com/shop/web:slow"] = "never_ready"
    service = make_service(env_config(fake, web))
    deploy_id = service.start(request(sha="slow"))
    service.advance(deploy_id)
    with pytest.raises(DeployError, match="is not waiting for a promote \\(phase rollout\\)"):
        service.promote("staging", by="carol", handle="h")
    assert service.get(deploy_id).followers == [] and not service.get(deploy_id).promote_requested
    service.rollback(rollback_request(requested_by="bob", handle="rb"))
    [joined] = service.get(deploy_id).followers
    assert (joined["action"], joined["by"], joined["handle"]) == ("rollback", "bob", "rb")
    assert drive(service, deploy_id).kind == "rolled_back"
