"""The adapter against the fake API server, through the real kubernetes client: typed errors,
patch flavours, subresources, credentials; plus the fake's patch semantics on their own."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tasks.deploy.kube import (
    Kube,
    KubeConflict,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeServerError,
    KubeUnavailable,
)
from tasks.platform.redis_server import free_port
from tests.support.fake_kube import json_patch, merge_patch, parse_selector, strategic_merge

NS = "shop"


@pytest.fixture
def kube(fake):
    client = Kube.from_host(fake.url, request_timeout=2)
    yield client
    client.close()


def test_typed_errors(fake, kube):
    fake.add_deployment(NS, "web", "img:v1")
    with pytest.raises(KubeNotFound) as err:
        kube.get_deployment(NS, "nope")
    assert err.value.status == 404 and not err.value.transient
    assert 'deployments.apps "nope" not found' in str(err.value)

    stale = kube.get_deployment(NS, "web")
    kube.scale_deployment(NS, "web", 3)  # someone else writes meanwhile
    stale["spec"]["replicas"] = 5
    with pytest.raises(KubeConflict) as err:
        kube.replace_deployment(NS, "web", stale)
    assert err.value.status == 409 and err.value.transient
    assert "the object has been modified" in str(err.value)
    with pytest.raises(KubeConflict, match="already exists"):
        kube.create_deployment(NS, {"metadata": {"name": "web"}, "spec": stale["spec"]})

    fake.inject_error("GET", r"/deployments/web$", 500)
    with pytest.raises(KubeServerError) as err:
        kube.get_deployment(NS, "web")
    assert err.value.status == 500 and err.value.transient
    assert kube.get_deployment(NS, "web")["spec"]["replicas"] == 3  # one-shot fault

    fake.inject_error("PATCH", r"/deployments/web$", 403)
    with pytest.raises(KubeForbidden):
        kube.patch_deployment(NS, "web", {"metadata": {"labels": {"x": "y"}}})

    with pytest.raises(KubeInvalid, match="field is immutable"):
        kube.patch_deployment(NS, "web", {"spec": {"selector": {"matchLabels": {"app": "other"}}}})
    # the client sends JSON bodies on PUT and POST without a Content-Type; the fake copes
    assert {r[2] for r in fake.requests if r[0] in ("PUT", "POST")} == {None}


@pytest.mark.integration  # connects to a closed local port
def test_no_server_is_unavailable():
    client = Kube.from_host(f"http://127.0.0.1:{free_port()}", request_timeout=0.5)
    with pytest.raises(KubeUnavailable) as err:
        client.get_deployment(NS, "web")
    assert err.value.transient


def test_patch_flavours_generation_and_resource_version(fake, kube):
    fake.add_deployment(NS, "web", "img:v1")
    before = kube.get_deployment(NS, "web")
    labelled = kube.patch_deployment(NS, "web", {"metadata": {"labels": {"team": "shop"}}}, kind="merge")
    assert labelled["metadata"]["generation"] == before["metadata"]["generation"]  # metadata only
    assert int(labelled["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    patched = kube.patch_deployment(NS, "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "proxy:1"}]}}}})
    names = [c["name"] for c in patched["spec"]["template"]["spec"]["containers"]]
    assert names == ["app", "sidecar"]  # strategic merge: containers merge by name
    assert patched["metadata"]["generation"] == before["metadata"]["generation"] + 1
    replaced = kube.patch_deployment(NS, "web", [
        {"op": "remove", "path": "/spec/template/spec/containers/1"}])
    assert [c["name"] for c in replaced["spec"]["template"]["spec"]["containers"]] == ["app"]
    types = {r[2] for r in fake.requests if r[0] == "PATCH"}
    assert types == {"application/merge-patch+json", "application/strategic-merge-patch+json",
                     "application/json-patch+json"}
    assert {r[2] for r in fake.requests if r[0] == "GET"} == {None}


def test_scale_replica_sets_pods_and_service_selector(fake, kube):
    fake.add_deployment(NS, "web", "img:v1", replicas=2, labels={"app": "web", "track": "stable"})
    fake.add_service(NS, "web", {"app": "web"})
    assert kube.scale_deployment(NS, "web", 3)["spec"]["replicas"] == 3
    deadline = time.time() + 3
    while len(kube.list_pods(NS, "app=web,track in (stable)")) != 3:
        assert time.time() < deadline
        time.sleep(0.02)
    (rs,) = kube.list_replica_sets(NS, "app=web")
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["metadata"]["labels"]["pod-template-hash"] in rs["metadata"]["name"]
    assert kube.list_pods(NS, "app=web,track!=stable") == []

    kube.set_service_selector(NS, "web", {"app": "web", "color": "green"}, expect={"app": "web"})
    assert kube.get_service_selector(NS, "web") == {"app": "web", "color": "green"}
    with pytest.raises(KubeInvalid, match="test failed"):  # compare-and-swap lost
        kube.set_service_selector(NS, "web", {"app": "web", "color": "blue"}, expect={"app": "web"})


def test_kubeconfig_credentials(fake, kube, tmp_path):
    fake.add_deployment(NS, "web", "img:v1")
    path = tmp_path / "kubeconfig"
    path.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{fake.url}"}}}}]
users: [{{name: bot, user: {{token: "s3cret"}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: bot, namespace: {NS}}}}}]
current-context: fake
""")
    client = Kube.from_kubeconfig(str(path))
    assert client.get_deployment(NS, "web")["metadata"]["name"] == "web"
    client.close()
    with pytest.raises(Exception, match="kubeconfig"):
        Kube.from_kubeconfig(str(tmp_path / "missing"))


@pytest.mark.integration  # starts the fake API server and talks to it
def test_fake_runs_as_a_module():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.fake_kube", "--port", str(port), "--demo"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "fake kube-apiserver" in proc.stdout.readline()
        client = Kube.from_host(f"http://127.0.0.1:{port}", request_timeout=2)
        assert client.get_deployment("default", "app")["spec"]["replicas"] == 2
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stdout.close()


# ---- the fake's patch and selector semantics, directly

def test_strategic_merge_semantics():
    orig = {"spec": {"containers": [{"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}]},
                                    {"name": "side", "image": "s:1"}],
                     "tolerations": [{"key": "x"}], "nodeSelector": {"disk": "ssd", "zone": "a"}}}
    patch = {"spec": {"containers": [{"name": "app", "image": "a:2", "env": [{"name": "B", "value": "2"}]},
                                     {"name": "side", "$patch": "delete"}],
                      "tolerations": [{"key": "y"}], "nodeSelector": {"zone": None}}}
    out = strategic_merge(orig, patch)
    assert out["spec"]["containers"] == [{"name": "app", "image": "a:2",
                                          "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]
    assert out["spec"]["tolerations"] == [{"key": "y"}]  # no merge key: replaced
    assert out["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert strategic_merge(orig, {"spec": {"$patch": "replace", "x": 1}}) == {"spec": {"x": 1}}


def test_merge_and_json_patch_semantics():
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1, 2]},
                       {"a": {"b": None}, "l": [3]}) == {"a": {"c": 2}, "l": [3]}
    doc = {"a": {"b": [1, 2]}, "m/n": 0}
    out = json_patch(doc, [{"op": "add", "path": "/a/b/-", "value": 3},
                           {"op": "replace", "path": "/m~1n", "value": 9},
                           {"op": "copy", "from": "/a/b", "path": "/c"},
                           {"op": "move", "from": "/c", "path": "/d"},
                           {"op": "test", "path": "/d/2", "value": 3}])
    assert out == {"a": {"b": [1, 2, 3]}, "m/n": 9, "d": [1, 2, 3]}
    assert doc == {"a": {"b": [1, 2]}, "m/n": 0}


def test_label_selectors():
    labels = {"app": "web", "track": "canary"}
    assert parse_selector("app=web,track in (canary, stable)")(labels)
    assert parse_selector("app==web,!color")(labels)
    assert not parse_selector("track notin (canary)")(labels)
    assert not parse_selector("app=web,track!=canary")(labels)
    assert parse_selector("")(labels)


def test_fake_controller_rollout_follows_kubectl_rollout_status(fake, kube):
    from tasks.deploy.rollout import rollout_status
    fake.add_deployment(NS, "web", "img:v1", replicas=4)
    fake.observe_delay, fake.ready_after = 0.1, 0.05
    kube.patch_deployment(NS, "web", {"spec": {
        "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"spec": {"containers": [{"name": "app", "image": "img:v2"}]}}}})
    messages, deadline = [], time.time() + 5
    while True:
        dep = kube.read_deployment_status(NS, "web")
        status = rollout_status(dep)
        messages.append(status.message.split(": ")[-1])
        st = dep["status"]
        assert (st.get("replicas") or 0) <= 5                      # maxSurge 1
        if dep["status"].get("observedGeneration") == dep["metadata"]["generation"]:
            assert (st.get("availableReplicas") or 0) >= 4         # maxUnavailable 0
        if status.state == "done":
            break
        assert time.time() < deadline
        time.sleep(0.01)
    assert messages[0] == 'waiting for deployment "web" spec update to be observed'
    assert any("new replicas have been updated" in m for m in messages)
    assert messages[-1] == 'deployment "web" successfully rolled out'
    revisions = sorted(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                       for rs in kube.list_replica_sets(NS, "app=web"))
    assert revisions == ["1", "2"]
