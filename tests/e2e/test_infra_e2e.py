"""Infrastructure from the thread, end to end: receiver → real Redis → real worker processes →
the fake GitLab over HTTP (python-gitlab) holding the manifests at two commits → the fake
kube-apiserver with the real kubernetes client doing server-side apply.

Each test is one thing a person sees: a plan with its diff and nothing changed in the cluster,
the apply of exactly that plan; an apply refused after a push; disallowed kinds refused with
file and document named; a redelivered apply applying once."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import record_key
from tests.support.fake_kube import FakeKube
from tests.support.hooks import note_hook
from tests.support.procs import configured_stack, post_delivery, wait_until

PROJECT = 15
ALICE, BOB = 7, 8  # Developer, Maintainer
NS = "shop-staging"
IMAGE = "registry.example.com/shop/web:{sha}"
DIR = "deploy/k8s/staging"
LABEL = "devops-agent.io/environment"


def app_yaml(replicas: int = 2) -> str:
    return f"""\
# the web tier
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: app
        image: registry.example.com/shop/web:{{sha}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - {{name: http, port: 80}}
---
"""


CONFIG_V1 = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data:
  mode: "fast"
  built: "{short_sha}"
"""
CONFIG_V2 = CONFIG_V1.replace('"fast"', '"careful"')


@pytest.fixture(scope="module")
def kube():
    fake = FakeKube(ready_after=0.05, observe_delay=0.01).serve()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, kube, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("infra")
    config = {
        "chatops": {"prefix": "/devops"},
        "access": {"staging": {"min_access": "developer"}},
        "environments": {"staging": {
            "credentials": {"mode": "host", "host": kube.url, "verify_ssl": False},
            "namespace": NS, "deployment": "web", "container": "app", "image": IMAGE,
            "timings": {"poll_interval": 0.05, "rollout_timeout": 20.0, "api_error_retries": 3},
            "manifests": {"path": DIR, "plan_ttl": 600}}},
    }
    with configured_stack(config, tmp, redis_server.client_url(), fake_gitlab_process,
                          projects=str(PROJECT)) as stack:
        yield {"url": stack.url}


@pytest.fixture
def gl(stack, fake_gitlab_proc, kube, redis_client):
    fake = fake_gitlab_proc
    fake.add_user("dev-alice", id=ALICE)
    fake.add_user("maint-bob", id=BOB)
    fake.add_project("acme/shop", id=PROJECT, members={ALICE: 30, BOB: 40},
                     files={f"{DIR}/app.yaml": app_yaml(), f"{DIR}/config.yml": CONFIG_V1,
                            f"{DIR}/README.md": "not a manifest", "src/main.py": "print()"})
    fake.add_issue(PROJECT, "Tune the web tier", iid=42)
    pipeline(fake)
    with kube.lock:  # every case starts from the same cluster
        kube.objects.clear()
        kube._write_hooks.clear()
    kube.add_deployment(NS, "web", IMAGE.format(sha="a" * 40))
    # an object the manifests no longer hold, labelled for the environment by an earlier apply
    with kube.lock:
        kube._create("configmaps", NS, {"metadata": {"name": "old-config",
                                                     "labels": {LABEL: "staging"}},
                                        "data": {"x": "1"}})
    return fake


def head(fake) -> str:
    return GitLabAdapter(fake.url, fake.token).resolve_ref(PROJECT, "main")


def pipeline(fake) -> None:
    fake.add_pipeline(PROJECT, ref="main", status="success", sha=head(fake),
                      jobs=[{"name": "build", "status": "success"}])


def send(stack, redis_client, payload: dict) -> None:
    r = post_delivery(stack["url"], orjson.dumps(payload), "Note Hook", key=str(uuid.uuid4()))
    assert r.status_code == 202, r.text
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
               timeout=30, what="the delivery to be processed")


def command(stack, redis_client, gl, text: str, user=(ALICE, "dev-alice")) -> tuple[str, dict]:
    """Write `text` as a note; returns the reply's marker and the hook payload."""
    payload = note_hook(gl, PROJECT, 42, text, *user)
    send(stack, redis_client, payload)
    return f"devops-agent:cmd:{payload['object_attributes']['id']}:0", payload


def reply(gl, marker: str) -> str:
    for n in GitLabAdapter(gl.url, gl.token).list_notes(PROJECT, "issue", 42):
        if marker in n["body"]:
            return n["body"]
    return ""


def final(gl, marker: str, timeout: float = 30) -> str:
    def done() -> str:
        body = reply(gl, marker)
        return body if body and "⏳" not in body else ""
    return str(wait_until(done, timeout=timeout, what=f"an answer in {marker}"))


def writes(kube) -> list[tuple[str, str]]:
    """Every write a client made from now on (dry runs are not writes)."""
    seen: list[tuple[str, str]] = []
    kube.on_write(lambda fake, plural, ns, name: seen.append((plural, name)))
    return seen


def test_plan_then_apply_creates_and_changes_objects(stack, gl, kube, redis_client):
    sha = head(gl)
    written = writes(kube)
    marker, _ = command(stack, redis_client, gl, "/devops plan staging")
    body = final(gl, marker)
    assert "📋 plan" in body and f"`main` at {sha[:8]}" in body, body
    assert "**2 to create, 1 to change, 1 prune candidate.**" in body, body
    assert "| Deployment/web | ✏️ change" in body, body
    assert "| Service/web | ➕ create |" in body and "| ConfigMap/web-config | ➕ create |" in body
    assert (f"`spec.template.spec.containers[app].image`: `{IMAGE.format(sha='a' * 40)}` → "
            f"`{IMAGE.format(sha=sha)}`") in body, body
    assert f"`metadata.labels.{LABEL}`: `(none)` → `staging`" in body, body
    assert "`ConfigMap/old-config`" in body and "**not deleted**" in body, body
    # a plan writes nothing: every apply it sent was a dry run
    assert written == []
    assert ("PATCH", f"/api/v1/namespaces/{NS}/services/web",
            "application/apply-patch+yaml") in kube.requests
    assert kube.get("deployments", NS, "web")["spec"]["template"]["spec"]["containers"][0][
        "image"] == IMAGE.format(sha="a" * 40)
    with pytest.raises(KeyError):
        kube.get("services", NS, "web")

    refused, _ = command(stack, redis_client, gl, "/devops apply staging")
    assert "refused by the **access** gate" in final(gl, refused)
    assert written == []

    applied, _ = command(stack, redis_client, gl, "/devops apply staging", (BOB, "maint-bob"))
    body = final(gl, applied)
    assert "✅ apply of plan" in body and "3 object(s) applied, 1 rollout(s) complete." in body, body
    assert "| Service/web | ✅ created |" in body and "| Deployment/web | ✅ configured |" in body
    assert "rollout of Deployment/web: ✅" in body, body
    dep = kube.get("deployments", NS, "web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE.format(sha=sha)
    assert dep["metadata"]["labels"][LABEL] == "staging"
    assert any(m["manager"] == "devops-agent" and m["operation"] == "Apply"
               for m in dep["metadata"]["managedFields"])
    assert kube.get("configmaps", NS, "web-config")["data"] == {"mode": "fast", "built": sha[:8]}
    assert kube.get("services", NS, "web")["spec"]["ports"] == [{"name": "http", "port": 80}]
    kube.get("configmaps", NS, "old-config")  # a prune candidate is never deleted
    assert sorted(written) == [("configmaps", "web-config"), ("deployments", "web"),
                               ("services", "web")]


def test_a_push_between_plan_and_apply_refuses_the_apply(stack, gl, kube, redis_client):
    marker, _ = command(stack, redis_client, gl, "/devops plan staging")
    planned = final(gl, marker)
    old = head(gl)
    gl.push_commit(PROJECT, "main", {f"{DIR}/config.yml": CONFIG_V2}, user_id=ALICE)
    pipeline(gl)
    new = head(gl)
    written = writes(kube)
    applied, _ = command(stack, redis_client, gl, "/devops apply staging", (BOB, "maint-bob"))
    body = final(gl, applied)
    assert f"is for `main` at {old[:8]}, but `main` is now at {new[:8]}" in body, body
    assert "a newer commit needs a new plan" in body
    assert written == [] and "📋 plan" in planned

    # planned again, the new commit applies
    marker, _ = command(stack, redis_client, gl, "/devops plan staging")
    assert f"at {new[:8]}" in final(gl, marker)
    applied, _ = command(stack, redis_client, gl, "/devops apply staging", (BOB, "maint-bob"))
    assert "✅ apply of plan" in final(gl, applied)
    assert kube.get("configmaps", NS, "web-config")["data"]["mode"] == "careful"


HOSTILE = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop-staging}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: everything}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: elsewhere, namespace: kube-system}
data: {x: "1"}
"""


def test_disallowed_kinds_are_refused_and_nothing_is_planned(stack, gl, kube, redis_client):
    gl.push_commit(PROJECT, "main", {f"{DIR}/extra.yaml": HOSTILE}, user_id=ALICE)
    pipeline(gl)
    written = writes(kube)
    sent = len(kube.requests)
    marker, _ = command(stack, redis_client, gl, "/devops plan staging")
    body = final(gl, marker)
    assert "❌ cannot plan `staging`" in body and "nothing was planned" in body, body
    assert f"`{DIR}/extra.yaml, document 1` (Namespace `shop-staging`): Namespace is " \
           "cluster-scoped" in body, body
    assert f"`{DIR}/extra.yaml, document 2` (ClusterRole `everything`): ClusterRole is " \
           "cluster-scoped" in body, body
    assert f"`{DIR}/extra.yaml, document 3` (Secret `db`): a Secret with inline" in body, body
    assert f"`{DIR}/extra.yaml, document 4` (ConfigMap `elsewhere`): namespace `kube-system` " \
           "is outside this environment" in body, body
    assert "hunter2" not in body
    # refused before the API server was asked anything
    assert not any(ctype == "application/apply-patch+yaml" for _, _, ctype in kube.requests[sent:])
    assert written == []
    applied, _ = command(stack, redis_client, gl, "/devops apply staging", (BOB, "maint-bob"))
    assert "no plan of `staging` to apply" in final(gl, applied)
    assert written == []


def test_a_redelivered_apply_applies_once(stack, gl, kube, redis_client):
    marker, _ = command(stack, redis_client, gl, "/devops plan staging")
    final(gl, marker)
    written = writes(kube)
    applied, payload = command(stack, redis_client, gl, "/devops apply staging",
                               (BOB, "maint-bob"))
    first = final(gl, applied)
    assert "✅ apply of plan" in first, first
    send(stack, redis_client, payload)  # GitLab delivers the same note again
    assert reply(gl, applied) == first
    again, _ = command(stack, redis_client, gl, "/devops apply staging", (BOB, "maint-bob"))
    assert "was already applied (by @maint-bob); nothing was sent again" in final(gl, again)
    assert sorted(written) == [("configmaps", "web-config"), ("deployments", "web"),
                               ("services", "web")]


def test_a_big_plan_links_the_full_plan_as_a_private_snippet(stack, gl, kube, redis_client):
    big = "---\n".join(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big-{i}}}\n"
                       f"data: {{blob: '{'x' * 400}'}}\n" for i in range(40))
    gl.push_commit(PROJECT, "main", {f"{DIR}/big.yaml": big}, user_id=ALICE)
    pipeline(gl)
    marker, _ = command(stack, redis_client, gl, "/devops plan staging")
    body = final(gl, marker)
    assert len(body) < 9000 and "**42 to create, 1 to change, 1 prune candidate.**" in body, body
    [snippet] = [c for c in gl.calls(method="POST", path_re=r"/snippets$")]
    assert snippet["json"]["visibility"] == "private"
    content = snippet["json"]["files"][0]["content"]
    assert content.count("x" * 400) == 40 and "## ConfigMap/big-39 (created)" in content
    assert "Full plan: " in body and "/-/snippets/" in body, body
