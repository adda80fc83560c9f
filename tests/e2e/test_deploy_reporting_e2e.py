"""What people see about deploys, end to end: receiver → real Redis → real worker processes →
the fake GitLab over HTTP (python-gitlab), deploying to the fake kube-apiserver with the real
kubernetes client.

Each test is one thing a person reads in GitLab after a deploy: the verdict of a rollback, what
`/devops status` says runs, the outcome label, which reply a rollback sent during a deploy
edits, and (read from the cluster) how many replicas serve after a blue-green flip-back."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tasks.deploy.model import DeployRecord
from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import record_key
from tests.support.hooks import label_hook, note_hook
from tests.support.procs import configured_stack, deploys_settled, post_delivery, wait_until

PROJECT = 15
ALICE, BOB, RITA = 7, 8, 9  # Developer, Maintainer, Reporter
OLD, SHA = "a" * 40, "c" * 40
IMAGE = "registry.example.com/shop/web:{sha}"
STAGING, PROD = "shop-staging", "shop-prod"


def _target(kube, health, namespace: str, **extra) -> dict:
    return {"credentials": {"mode": "host", "host": kube.url, "verify_ssl": False},
            "namespace": namespace, "deployment": "web", "container": "app", "image": IMAGE,
            "health_checks": [{"url": health.url + "/healthz", "successes": 1, "failures": 2,
                               "timeout": 1}],
            "verification": {"interval": 0.05, "timeout": 3.0},
            # long enough that a deploy whose pods never get ready is still rolling out when
            # a test acts on it; each such test ends it itself
            "timings": {"poll_interval": 0.05, "rollout_timeout": 60.0, "api_error_retries": 3},
            **extra}


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, kube, health, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy-reporting")
    config = {
        "chatops": {"prefix": "/devops"},
        "access": {"staging": {"min_access": "developer"},
                   "production": {"min_access": "developer"}},
        "environments": {
            "staging": _target(kube, health, STAGING),
            "production": _target(
                kube, health, PROD, strategy={"type": "blue_green", "service": "web"},
                health_checks=[{"url": health.url + "/{color}/healthz", "successes": 2,
                                "failures": 2, "timeout": 1}]),
        },
    }
    with configured_stack(config, tmp, redis_server.client_url(), fake_gitlab_process) as stack:
        yield {"url": stack.url}


@pytest.fixture
def gl(stack, fake_gitlab_proc, kube, health, redis_client):
    fake = fake_gitlab_proc
    fake.add_user("dev-alice", id=ALICE)
    fake.add_user("maint-bob", id=BOB)
    fake.add_user("rep-rita", id=RITA)
    fake.add_project("acme/shop", id=PROJECT, members={ALICE: 30, BOB: 40, RITA: 20})
    fake.add_issue(PROJECT, "Release checkout fix", iid=42)
    fake.add_issue(PROJECT, "Checkout is broken", iid=43)
    fake.add_pipeline(PROJECT, ref="main", status="success", sha=SHA,
                      jobs=[{"name": "build", "status": "success"}])
    with kube.lock:  # every case starts from the same cluster
        kube.objects.clear()
        kube._write_hooks.clear()
        kube.image_behavior.clear()
    kube.add_deployment(STAGING, "web", IMAGE.format(sha=OLD))
    kube.add_deployment(PROD, "web-blue", IMAGE.format(sha=OLD), replicas=4,
                        labels={"app": "web", "color": "blue"})
    kube.add_deployment(PROD, "web-green", IMAGE.format(sha=OLD), replicas=0,
                        labels={"app": "web", "color": "green"})
    kube.add_service(PROD, "web", {"app": "web", "color": "blue"})
    for path in ("/healthz", "/blue/healthz", "/green/healthz"):
        health.set_status(path, 200)
    yield fake
    deploys_settled(redis_client)


def send(stack, redis_client, payload: dict, event: str = "Note Hook") -> None:
    r = post_delivery(stack["url"], orjson.dumps(payload), event, key=str(uuid.uuid4()))
    assert r.status_code == 202, r.text
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
               timeout=30, what="the delivery to be processed")


def command(stack, redis_client, gl, text: str, user=(ALICE, "dev-alice"), iid: int = 42) -> str:
    """Write `text` as a note; returns the reply's marker."""
    payload = note_hook(gl, PROJECT, iid, text, *user)
    send(stack, redis_client, payload)
    return f"devops-agent:cmd:{payload['object_attributes']['id']}:0"


def reply(gl, marker: str, iid: int = 42) -> str:
    for n in GitLabAdapter(gl.url, gl.token).list_notes(PROJECT, "issue", iid):
        if marker in n["body"]:
            return n["body"]
    return ""


def final(gl, marker: str, iid: int = 42, timeout: float = 40) -> str:
    """The reply once it holds a verdict (no longer queued or running)."""
    def done() -> str:
        body = reply(gl, marker, iid)
        return body if body and not any(s in body for s in ("⏳", "🚀")) else ""
    return str(wait_until(done, timeout=timeout, what=f"a verdict in {marker}"))


def every_version(gl, marker: str, iid: int = 42) -> list[str]:
    """Every body devops-agent ever wrote into that reply (creates and edits)."""
    bodies = []
    for call in gl.calls(path_re=rf"/issues/{iid}/notes(/\d+)?$"):
        body = (call.get("json") or {}).get("body") or ""
        if call["method"] in ("POST", "PUT") and marker in body:
            bodies.append(body)
    return bodies


def labels(gl, iid: int = 42) -> list[str]:
    return sorted(x for x in GitLabAdapter(gl.url, gl.token).get_issue(PROJECT, iid)["labels"]
                  if x.startswith("env::"))


def image(kube, ns: str = STAGING, name: str = "web") -> str:
    return kube.get("deployments", ns, name)["spec"]["template"]["spec"]["containers"][0]["image"]


def deploys(redis_client) -> list[DeployRecord]:
    return [DeployRecord.from_json(redis_client.get(k))
            for k in redis_client.scan_iter("da:deploy:record:*")]


def stuck_deploy(stack, redis_client, gl, kube, sha: str = "e" * 40, iid: int = 42) -> str:
    """A deploy by Alice whose new pods never get ready: it stays in its rollout phase."""
    kube.image_behavior[IMAGE.format(sha=sha)] = "never_ready"
    gl.add_pipeline(PROJECT, ref="main", status="success", sha=sha,
                    jobs=[{"name": "build", "status": "success"}])
    marker = command(stack, redis_client, gl, "/devops deploy staging", iid=iid)
    wait_until(lambda: any(d.kind == "deploy" and d.sha == sha and d.phase == "rollout"
                           for d in deploys(redis_client)), timeout=20,
               what="the deploy to be rolling out")
    return marker


def test_a_successful_rollback_says_so_and_labels_it_rolled_back(stack, gl, kube, redis_client):
    deployed = command(stack, redis_client, gl, "/devops deploy staging")
    assert "✅ deploy of `staging` done" in final(gl, deployed)
    assert image(kube) == IMAGE.format(sha=SHA)

    marker = command(stack, redis_client, gl, "/devops rollback staging", (BOB, "maint-bob"))
    body = final(gl, marker)
    assert "✅ rollback of `staging` done" in body, body
    assert f"staging runs {IMAGE.format(sha=OLD)} again" in body
    assert "failed" not in body and "❌" not in body
    assert image(kube) == IMAGE.format(sha=OLD)
    assert labels(gl) == ["env::staging::rolled-back"]
    # A rollback returns to a revision, not a branch: no reply of it ever names one.
    versions = every_version(gl, marker)
    assert versions and not any("`main`" in v for v in versions), versions


def test_status_reads_what_runs_from_the_cluster(stack, gl, kube, redis_client):
    deployed = command(stack, redis_client, gl, "/devops deploy staging")
    final(gl, deployed)
    command(stack, redis_client, gl, '/devops lock production "db migration"', (BOB, "maint-bob"))
    marker = command(stack, redis_client, gl, "/devops status", (RITA, "rep-rita"))
    body = reply(gl, marker)
    rows = {line.split("|")[1].strip(): line for line in body.splitlines()
            if line.startswith("| ") and not line.startswith("| Environment")}
    assert IMAGE.format(sha=SHA) in rows["staging"] and "revision 2" in rows["staging"], body
    assert "2/2 ready" in rows["staging"], body
    assert "unknown" not in body
    assert IMAGE.format(sha=OLD) in rows["production"] and "blue" in rows["production"], body
    assert "4/4 ready" in rows["production"], body
    assert "@maint-bob: db migration" in rows["production"], body

    stuck = stuck_deploy(stack, redis_client, gl, kube)
    marker = command(stack, redis_client, gl, "/devops status staging", (RITA, "rep-rita"))
    body = reply(gl, marker)
    [row] = [line for line in body.splitlines() if line.startswith("| staging")]
    [running] = [d for d in deploys(redis_client) if d.status == "running"]
    assert f"`{running.id}`" in row and "@dev-alice" in row, body
    assert IMAGE.format(sha="e" * 40) in row and "rollout" in row, body
    # a manual lock and the deploy hold staging together; the Held column shows both
    command(stack, redis_client, gl, '/devops lock staging "db migration"', (BOB, "maint-bob"), iid=43)

    def held() -> str:
        marker = command(stack, redis_client, gl, "/devops status staging", (RITA, "rep-rita"))
        [row] = [line for line in reply(gl, marker).splitlines() if line.startswith("| staging")]
        return row.split(" | ")[4]
    both = held()
    assert "🔒 @maint-bob: db migration (locked since " in both, both
    assert f"deploy `{running.id}` by @dev-alice since " in both and "phase `rollout`" in both, both
    # unlock releases the manual lock only: the deploy still holds staging
    command(stack, redis_client, gl, "/devops unlock staging", (BOB, "maint-bob"), iid=43)
    after = held()
    assert "🔒" not in after and f"deploy `{running.id}` by @dev-alice" in after, after
    # end the stuck deploy
    command(stack, redis_client, gl, "/devops rollback staging", (BOB, "maint-bob"), iid=43)
    final(gl, stuck)


@pytest.mark.parametrize("tier", ["free", "premium"])
def test_one_outcome_label_per_environment_through_labels(stack, gl, kube, health, redis_client,
                                                          tier):
    gl.set_project(PROJECT, tier=tier)

    def trigger(label: str, user, expect: str) -> None:
        send(stack, redis_client, label_hook(gl, PROJECT, 42, label, *user), "Issue Hook")
        wait_until(lambda: f"env::staging::{expect}" in labels(gl), timeout=40,
                   what=f"staging to end {expect}")
        assert labels(gl) == [f"env::staging::{expect}"], labels(gl)

    trigger("deploy::staging", (ALICE, "dev-alice"), "deployed")
    trigger("rollback::staging", (BOB, "maint-bob"), "rolled-back")
    health.set_status("/healthz", 503)
    trigger("deploy::staging", (ALICE, "dev-alice"), "deploy-failed")
    health.set_status("/healthz", 200)
    trigger("deploy::staging", (ALICE, "dev-alice"), "deployed")
    raw = GitLabAdapter(gl.url, gl.token).get_issue(PROJECT, 42)["labels"]
    assert not any(x.startswith(("deploy::", "rollback::")) for x in raw), raw


def test_a_rollback_during_a_deploy_has_its_own_reply_and_verdict(stack, gl, kube, redis_client):
    deploy_reply = stuck_deploy(stack, redis_client, gl, kube)
    assert labels(gl) == ["env::staging::deploying"]
    rollback_reply = command(stack, redis_client, gl, "/devops rollback staging",
                             (BOB, "maint-bob"), iid=43)
    mine = final(gl, rollback_reply, iid=43)
    assert "@maint-bob ✅ rollback of `staging` done" in mine, mine
    assert "aborted" in mine and "dev-alice" in mine, mine
    theirs = final(gl, deploy_reply)
    assert theirs.splitlines()[1] == "> /devops deploy staging"
    assert "@dev-alice" in theirs and "aborted by @maint-bob for a rollback" in theirs, theirs
    assert image(kube) == IMAGE.format(sha=OLD)
    assert labels(gl, 42) == ["env::staging::rolled-back"]
    assert labels(gl, 43) == ["env::staging::rolled-back"]


def test_blue_green_flip_back_restores_the_old_colours_replicas(stack, gl, kube, health,
                                                                redis_client):
    seen: dict[str, tuple[int, int]] = {}

    def autoscaler(fake, plural, ns, name):
        # Something scales the old colour down as soon as traffic leaves it (a scale-to-zero
        # autoscaler); the switch back is what the test watches.
        if (plural, ns, name) != ("services", PROD, "web"):
            return
        colour = fake.objects[("services", PROD, "web")]["spec"]["selector"]["color"]
        blue = fake.objects[("deployments", PROD, "web-blue")]
        if colour == "green" and "down" not in seen:
            seen["down"] = (0, 0)
            fake.scale(PROD, "web-blue", 0)
        elif colour == "blue" and "down" in seen:
            seen["back"] = (blue["spec"]["replicas"], (blue.get("status") or {}).get("readyReplicas", 0))

    kube.on_write(autoscaler)
    health.set_status("/green/healthz", [200, 200, 503])  # fine before the switch, not after
    marker = command(stack, redis_client, gl, "/devops deploy production")
    body = final(gl, marker)
    assert seen.get("back") == (4, 4), seen  # the switch back found blue at full size, ready
    assert "rolled back automatically" in body, body
    assert kube.get("services", PROD, "web")["spec"]["selector"]["color"] == "blue"
    assert kube.get("deployments", PROD, "web-blue")["spec"]["replicas"] == 4


def test_a_rollback_to_the_revision_that_just_failed_asks_for_force(stack, gl, kube, health,
                                                                     redis_client):
    final(gl, command(stack, redis_client, gl, "/devops deploy staging"))           # revision 2
    bad = "f" * 40
    gl.add_pipeline(PROJECT, ref="main", status="success", sha=bad,
                    jobs=[{"name": "build", "status": "success"}])
    health.set_status("/healthz", 503)
    deploy_reply = command(stack, redis_client, gl, "/devops deploy staging")        # 3, undone
    failed = final(gl, deploy_reply)
    assert "↩️ deploy of `staging` failed and was rolled back automatically" in failed, failed
    wait_until(lambda: "Post-mortem: #" in reply(gl, deploy_reply), timeout=20,
               what="the post-mortem's number in the deploy's reply")
    health.set_status("/healthz", 200)
    marker = command(stack, redis_client, gl, "/devops rollback staging", (BOB, "maint-bob"), iid=43)
    refused = final(gl, marker, iid=43)
    assert "🚫 rollback of `staging` refused" in refused, refused
    assert f"revision 3 runs {IMAGE.format(sha=bad)}, which failed its checks here" in refused
    assert '--force "reason"' in refused and "`rollback staging 1` goes to" in refused
    assert image(kube) == IMAGE.format(sha=SHA) and labels(gl, 43) == []
    forced = final(gl, command(stack, redis_client, gl,
                               '/devops rollback staging --force "the fix matters more"',
                               (BOB, "maint-bob"), iid=43), iid=43)
    assert "✅ rollback of `staging` done" in forced, forced
    assert image(kube) == IMAGE.format(sha=bad)
    assert labels(gl, 43) == ["env::staging::rolled-back"]
