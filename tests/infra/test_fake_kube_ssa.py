"""The fake API server's server-side apply, through the real kubernetes client, against what
the Kubernetes documentation says (reference/using-api/server-side-apply)."""

from __future__ import annotations

import pytest

from tasks.deploy.kube import Kube, KubeConflict, KubeInvalid, KubeNotFound
from tests.support.fake_kube import FakeKube

NS = "shop"


@pytest.fixture
def fake():
    f = FakeKube(ready_after=0.01, observe_delay=0.0).serve()
    yield f
    f.stop()


@pytest.fixture
def kube(fake):
    k = Kube.from_host(fake.url)
    yield k
    k.close()


def cm(data: dict, name: str = "c", **meta) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS, **meta}, "data": data}


def managers(obj: dict) -> dict[str, dict]:
    return {f"{m['manager']}/{m['operation']}": m["fieldsV1"]
            for m in obj["metadata"].get("managedFields") or []}


def test_apply_creates_and_records_ownership(fake, kube):
    out = kube.server_side_apply(cm({"a": "1"}, labels={"x": "y"}), "configmaps",
                                 field_manager="devops-agent", dry_run=False)
    assert out["data"] == {"a": "1"} and out["metadata"]["uid"]
    assert managers(out) == {"devops-agent/Apply": {"f:data": {"f:a": {}},
                                                    "f:metadata": {"f:labels": {"f:x": {}}}}}
    assert fake.get("configmaps", NS, "c")["data"] == {"a": "1"}
    assert ("PATCH", f"/api/v1/namespaces/{NS}/configmaps/c",
            "application/apply-patch+yaml") in fake.requests


def test_dry_run_answers_and_stores_nothing(fake, kube):
    out = kube.server_side_apply(cm({"a": "1"}), "configmaps", field_manager="m", dry_run=True)
    assert out["data"] == {"a": "1"}
    assert fake.list("configmaps", NS) == []
    kube.server_side_apply(cm({"a": "1"}), "configmaps", field_manager="m", dry_run=False)
    rv = fake.get("configmaps", NS, "c")["metadata"]["resourceVersion"]
    out = kube.server_side_apply(cm({"a": "2"}), "configmaps", field_manager="m", dry_run=True)
    assert out["data"] == {"a": "2"}
    stored = fake.get("configmaps", NS, "c")
    assert stored["data"] == {"a": "1"} and stored["metadata"]["resourceVersion"] == rv


def test_field_manager_is_required(fake):
    import requests

    r = requests.patch(f"{fake.url}/api/v1/namespaces/{NS}/configmaps/c", data="{}",
                       headers={"Content-Type": "application/apply-patch+yaml"}, timeout=5)
    assert r.status_code == 422 and "fieldManager: Required value" in r.json()["message"]


def test_an_unchanged_apply_writes_nothing(fake, kube):
    first = kube.server_side_apply(cm({"a": "1"}), "configmaps", field_manager="m", dry_run=False)
    again = kube.server_side_apply(cm({"a": "1"}), "configmaps", field_manager="m", dry_run=False)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_another_managers_field_conflicts_unless_forced(fake, kube):
    kube.server_side_apply(cm({"a": "1", "b": "1"}), "configmaps", field_manager="first",
                           dry_run=False)
    # the same value: no conflict, shared ownership
    kube.server_side_apply(cm({"a": "1"}), "configmaps", field_manager="second", dry_run=False)
    with pytest.raises(KubeConflict) as exc:
        kube.server_side_apply(cm({"a": "2"}), "configmaps", field_manager="second", dry_run=False)
    assert exc.value.status == 409
    assert 'Apply failed with 1 conflict: conflict with "first": .data.a' in str(exc.value)
    assert fake.get("configmaps", NS, "c")["data"]["a"] == "1"
    out = kube.server_side_apply(cm({"a": "2"}), "configmaps", field_manager="second",
                                 dry_run=False, force=True)
    assert out["data"] == {"a": "2", "b": "1"}
    assert managers(out) == {"first/Apply": {"f:data": {"f:b": {}}},
                             "second/Apply": {"f:data": {"f:a": {}}}}


def test_fields_dropped_from_the_config_are_removed_unless_someone_else_owns_them(kube):
    kube.server_side_apply(cm({"a": "1", "b": "1"}), "configmaps", field_manager="m", dry_run=False)
    kube.server_side_apply(cm({"c": "1"}), "configmaps", field_manager="other", dry_run=False)
    out = kube.server_side_apply(cm({"a": "1"}), "configmaps", field_manager="m", dry_run=False)
    assert out["data"] == {"a": "1", "c": "1"}


def test_updates_take_ownership_of_what_they_change(fake, kube):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": NS},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "app", "image": "web:1"}]}}}}
    out = kube.server_side_apply(dep, "deployments", field_manager="devops-agent", dry_run=False)
    assert out["metadata"]["generation"] == 1
    kube.scale_deployment(NS, "web", 5)  # an autoscaler, with the client's default manager
    with pytest.raises(KubeConflict, match=r'conflict with "OpenAPI-Generator": \.spec\.replicas'):
        kube.server_side_apply(dep, "deployments", field_manager="devops-agent", dry_run=True)
    # applying the autoscaler's value shares the field: no conflict; the image change goes in
    dep["spec"]["replicas"] = 5
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2"
    out = kube.server_side_apply(dep, "deployments", field_manager="devops-agent", dry_run=False)
    assert out["metadata"]["generation"] == 3  # the scale, then the template
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "web:2"}]
    shared = managers(out)
    assert "f:replicas" in shared["devops-agent/Apply"]["f:spec"]
    assert "f:replicas" in shared["OpenAPI-Generator/Update"]["f:spec"]


@pytest.mark.parametrize("plural, obj", [
    ("secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS},
                 "stringData": {"k": "v"}}),
    ("services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": NS},
                  "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
    ("widgets", {"apiVersion": "example.com/v1", "kind": "Widget",
                 "metadata": {"name": "w", "namespace": NS}, "spec": {"size": 3}}),
])
def test_other_kinds(fake, kube, plural, obj):
    out = kube.server_side_apply(obj, plural, field_manager="m", dry_run=False)
    assert out["metadata"]["name"] == obj["metadata"]["name"]
    if plural == "secrets":  # stringData is write-only, folded into data
        assert out["data"] == {"k": "dg=="} and "stringData" not in out
    assert kube.get_object(obj["apiVersion"], plural, NS, obj["metadata"]["name"])


def test_unknown_resources_and_mismatched_bodies(fake, kube):
    with pytest.raises(KubeNotFound):
        kube.server_side_apply({"apiVersion": "v1", "kind": "Gizmo",
                                "metadata": {"name": "g", "namespace": NS}}, "gizmos",
                               field_manager="m", dry_run=True)
    with pytest.raises(KubeInvalid, match=r"does not match the name on the URL|do not match"):
        kube.server_side_apply({"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": "g", "namespace": NS}}, "configmaps",
                               field_manager="m", dry_run=True)


def test_cluster_scoped_kinds_live_outside_namespaces(fake):
    import requests

    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    r = requests.post(f"{fake.url}/api/v1/namespaces", json=body, timeout=5)
    assert r.status_code == 201 and "namespace" not in r.json()["metadata"]
    assert requests.get(f"{fake.url}/api/v1/namespaces/team", timeout=5).status_code == 200
    r = requests.get(f"{fake.url}/apis/rbac.authorization.k8s.io/v1/namespaces/x/clusterroles",
                     timeout=5)
    assert r.status_code == 404
