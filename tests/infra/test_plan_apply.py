"""plan → apply as plain functions: RecordingGitLab for the repository, the fake API server
through the real client, real Redis for the plan store and the deploy lock."""

from __future__ import annotations

import pytest

from tasks.config.environments import parse_environments
from tasks.deploy.kube import Kube
from tasks.deploy.store import DeployStore
from tasks.infra import diff
from tasks.infra.apply import apply_plan
from tasks.infra.plan import make_plan
from tasks.infra.render import MAX_REPLY_CHARS, full_plan, plan_reply
from tasks.infra.store import PlanStore
from tests.support.fake_kube import FakeKube
from tests.support.recording_gitlab import RecordingGitLab

NS = "shop"


def manifest(n: int, value: str = "v") -> str:
    return "---\n".join(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"
                        f"data: {{k: '{value}'}}\n" for i in range(n))


@pytest.fixture
def fake():
    f = FakeKube(ready_after=0.01, observe_delay=0.0).serve()
    yield f
    f.stop()


def env(fake, **manifests):
    return parse_environments({"staging": {
        "credentials": {"mode": "host", "host": fake.url}, "namespace": NS, "deployment": "web",
        "container": "app", "image": "x:{sha}", "timings": {"poll_interval": 0.02,
                                                          "rollout_timeout": 5},
        "manifests": {"path": "k8s", **manifests}}}, "test")["staging"]


def planned(fake, redis_client, files: dict, kube=None, **manifests):
    gl = RecordingGitLab()
    gl.add_project("acme/shop", id=5, files=files)
    cfg = env(fake, **manifests)
    kube = kube or Kube.from_host(fake.url)
    plan = make_plan(gl, kube, PlanStore(redis_client), project=5, env="staging", cfg=cfg,
                     ref="main", sha=gl.resolve_ref(5, "main"), planned_by="alice")
    return plan, cfg, kube


def test_plan_is_stored_with_sha_digest_and_author(fake, redis_client):
    plan, _, _ = planned(fake, redis_client, {"k8s/a.yaml": manifest(2)})
    stored = PlanStore(redis_client).load(5, "staging")
    assert stored is not None and stored.id == plan.id and stored.sha == plan.sha
    assert stored.planned_by == "alice" and len(stored.digest) == 64
    assert [o["status"] for o in stored.objects] == ["created", "created"]
    assert redis_client.pttl(PlanStore.plan_key(5, "staging")) > 3_000_000


def test_a_big_diff_is_cut_to_a_bounded_reply_and_the_full_plan_keeps_everything(fake, redis_client):
    plan, _, kube = planned(fake, redis_client, {"k8s/a.yaml": manifest(60, "a" * 300)},
                            max_objects=100)
    apply_plan(kube, DeployStore(redis_client), plan, env(fake))
    plan, _, _ = planned(fake, redis_client, {"k8s/a.yaml": manifest(60, "b" * 300)},
                         kube=kube, max_objects=100)
    assert plan.counts() == {"changed": 60}
    text, truncated = plan_reply(plan, prefix="/devops", ttl=60,
                                 full_link="https://gitlab.example/-/snippets/1")
    assert truncated and len(text) <= MAX_REPLY_CHARS
    assert "more changes than fit here" in text and "Full plan: https://gitlab.example" in text
    full = full_plan(plan)
    assert full.count("b" * 300) >= 60 and "## ConfigMap/c59 (changed)" in full


def test_an_apply_whose_answer_is_lost_is_confirmed_by_reading_back(fake, redis_client):
    plan, cfg, _ = planned(fake, redis_client, {"k8s/a.yaml": manifest(1)})
    slow = Kube.from_host(fake.url, request_timeout=0.3)
    fake.slow_response("PATCH", r"/configmaps/c0$", 1.0)
    result = apply_plan(slow, DeployStore(redis_client), plan, cfg)
    [obj] = result["objects"]
    assert result["outcome"] == "applied", result
    assert obj["status"] == "created" and obj["detail"].startswith("read back after no answer")
    patches = [r for r in fake.requests if r[0] == "PATCH" and r[1].endswith("/c0")]
    assert len(patches) == 2  # the dry run and the one apply: never sent again


def test_an_apply_waits_for_the_deploy_lock_holder(fake, redis_client):
    plan, cfg, kube = planned(fake, redis_client, {"k8s/a.yaml": manifest(1)})
    locks = DeployStore(redis_client)
    assert locks.acquire("5", "staging", "deploy-123", 60)
    result = apply_plan(kube, locks, plan, cfg)
    assert result["outcome"] == "locked" and "deploy-123" in result["headline"]
    assert fake.list("configmaps", NS) == []


def test_a_refused_object_stops_the_apply(fake, redis_client):
    plan, cfg, kube = planned(fake, redis_client, {"k8s/a.yaml": manifest(3)})
    fake.inject_error("PATCH", r"/configmaps/c1$", 422)
    result = apply_plan(kube, DeployStore(redis_client), plan, cfg)
    assert [o["status"] for o in result["objects"]] == ["created", "failed", "not applied"]
    assert result["outcome"] == "failed"
    assert [c["metadata"]["name"] for c in fake.list("configmaps", NS)] == ["c0"]
    assert DeployStore(redis_client).holder("5", "staging") is None


def test_secret_values_never_show_in_a_diff():
    found = diff.changes({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                          "data": {"k": "b2xk"}},
                         {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                          "data": {"k": "bmV3"}}, secret=True)
    assert [(c.path, c.before, c.after) for c in found] == [("data.k", "(hidden)", "(hidden)")]


def test_diff_compares_keyed_lists_by_key_and_ignores_server_metadata():
    a = {"metadata": {"name": "x", "resourceVersion": "1", "managedFields": [1]},
         "spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]},
         "status": {"replicas": 1}}
    b = {"metadata": {"name": "x", "resourceVersion": "2"},
         "spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "image": "1"}]}}
    assert [(c.path, c.before, c.after) for c in diff.changes(a, b)] == [
        ("spec.containers[b].image", "1", "2")]
    assert diff.show("x`y\nz" * 100, 20).endswith("…") and "`" not in diff.show("x`y")
