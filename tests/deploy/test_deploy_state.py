"""Deploy state under one prefix: the start-up move of the old keys (a deploy in flight across
the upgrade carries on), the two reasons an environment is held (a manual lock and a deploy),
and a deploy refused by someone else's manual lock."""

from __future__ import annotations

import time

import orjson
import pytest

from tasks.deploy import keys
from tasks.deploy.gates import lock_gate
from tasks.deploy.keys import migrate_legacy_keys
from tasks.deploy.model import EnvironmentLocked
from tasks.deploy.requests import DeployRequest
from tasks.deploy.store import DeployStore
from tests.deploy.conftest import NS, drive, env_config

V1 = "registry.example.com/shop/web:v1"


def request(sha="abc123", who="alice", **fields) -> DeployRequest:
    return DeployRequest(project="42", env="staging", sha=sha, requested_by=who, ref="main", **fields)


def to_old_layout(redis_client) -> dict[str, str]:
    """What the release before the prefix left in Redis: every deploy key under its old name
    (the values were the same then). Returns old name -> new name."""
    renamed = {}
    for old, new in keys.LEGACY:
        for raw in list(redis_client.scan_iter(match=new + "*")):
            key = raw.decode()
            legacy = old + key[len(new):]
            redis_client.rename(key, legacy)
            renamed[legacy] = key
    return renamed


def test_a_deploy_in_flight_carries_on_after_its_keys_move(fake, web, reporter, make_service,
                                                          redis_client):
    fake.add_deployment(NS, "web", V1, replicas=2)
    cfg = env_config(fake, web)
    old_worker = make_service(cfg)
    deploy_id = old_worker.start(request(handle="reply-1"))
    old_worker.advance(deploy_id)  # the image is patched: the deploy is mid-rollout
    store = DeployStore(redis_client)
    store.lock_manually("42", "production", "bob", "db migration", 1_700_000_000.0)
    redis_client.set(keys.context("reply-1"), orjson.dumps({"project": 42}))
    redis_client.hset(keys.gitlab_deployment(42, "staging"), mapping={"status": "running"})
    lock_ttl = redis_client.pttl(keys.env_lock("42", "staging"))
    moved = to_old_layout(redis_client)
    assert {"deploy:" + deploy_id, "deploy-lock:42:staging", "da:envlock:42:production",
            "da:deploy-ctx:reply-1", "da:deployed:42:staging"} <= moved.keys()
    assert list(redis_client.scan_iter(match="da:deploy:*")) == []

    assert migrate_legacy_keys(redis_client) == len(moved)

    assert not any(redis_client.exists(old) for old in moved)
    assert all(redis_client.exists(new) for new in moved.values())
    # the environment lock keeps its TTL: a crashed deploy still lets go in time
    assert 0 < redis_client.pttl(keys.env_lock("42", "staging")) <= lock_ttl
    assert redis_client.ttl(keys.record(deploy_id)) > 0
    # a new worker (a fresh service) finds the deploy and finishes it
    new_worker = make_service(cfg)
    assert new_worker.status("staging", project="42").locked_by == deploy_id
    assert drive(new_worker, deploy_id).kind == "succeeded"
    assert store.history("42", "staging")[0].id == deploy_id
    # the manual lock came along: production is still held by bob
    assert not lock_gate(redis_client, 42, "production", "alice").passed
    # every start runs it: nothing is left to move the second time
    assert migrate_legacy_keys(redis_client) == 0


def test_an_old_key_never_overwrites_a_new_one(redis_client):
    redis_client.set("da:envlock:42:staging", orjson.dumps({"user": "old", "reason": "x", "at": 1}))
    DeployStore(redis_client).lock_manually("42", "staging", "new", "y", 2.0)
    assert migrate_legacy_keys(redis_client) == 0
    assert DeployStore(redis_client).manual_lock("42", "staging")[1].by == "new"
    assert redis_client.exists("da:envlock:42:staging")  # left in place, logged, not lost


def test_other_keys_that_share_an_old_prefix_stay(redis_client):
    redis_client.set("da:once:postmortem:d1", 1)
    redis_client.set("da:once:delivery:7", 1)  # not deploy state
    migrate_legacy_keys(redis_client)
    assert redis_client.exists(keys.postmortem_claim("d1"))
    assert redis_client.exists("da:once:delivery:7")


def test_an_environment_is_held_by_a_manual_lock_and_a_deploy_side_by_side(
        fake, web, make_service, redis_client):
    fake.add_deployment(NS, "web", V1, replicas=2)
    service = make_service(env_config(fake, web))
    store = DeployStore(redis_client)
    deploy_id = service.start(request())
    service.advance(deploy_id)
    # bob locks it while alice's deploy runs: both reasons hold it now
    assert store.lock_manually("42", "staging", "bob", "db migration", time.time())
    manual, deploy = service.status("staging", project="42").holds
    assert (manual.kind, manual.by, manual.reason) == ("manual", "bob", "db migration")
    assert (deploy.kind, deploy.by, deploy.deploy_id) == ("deploy", "alice", deploy_id)
    assert deploy.phase == "rollout" and deploy.since == service.get(deploy_id).created_at
    assert "🔒 @bob: db migration (locked since " in manual.describe()
    assert f"deploy `{deploy_id}` by @alice since " in deploy.describe()
    assert "phase `rollout`" in deploy.describe()
    # unlocking releases the manual lock only: the deploy still holds the environment
    raw, _ = store.manual_lock("42", "staging")
    assert store.unlock_manually("42", "staging", raw)
    assert [h.kind for h in store.holds("42", "staging")] == ["deploy"]
    assert store.holder("42", "staging") == deploy_id
    # and the deploy's end releases its own hold, never someone's manual lock
    store.lock_manually("42", "staging", "bob", "after the deploy", time.time())
    assert drive(service, deploy_id).kind == "succeeded"
    assert [h.kind for h in store.holds("42", "staging")] == ["manual"]


def test_a_deploy_is_refused_by_someone_elses_manual_lock(fake, web, make_service, redis_client):
    fake.add_deployment(NS, "web", V1, replicas=2)
    service = make_service(env_config(fake, web))
    DeployStore(redis_client).lock_manually("42", "staging", "bob", "db migration",
                                            1_700_000_000.0)
    with pytest.raises(EnvironmentLocked) as refused:
        service.start(request(who="alice"))
    assert str(refused.value) == ("staging is locked by @bob: db migration (since 2023-11-14 "
                                  "22:13 UTC). Ask them to `unlock staging`.")
    with pytest.raises(EnvironmentLocked):
        service.rollback(DeployRequest(action="rollback", project="42", env="staging",
                                       requested_by="alice"))
    assert list(redis_client.scan_iter(match=keys.record("*"))) == []  # nothing was started
    assert service.status("staging", project="42").locked_by is None
    # the gates say the same, before anything is submitted
    gate = lock_gate(redis_client, 42, "staging", "alice")
    assert not gate.passed and gate.detail == str(refused.value)
    # the lock's holder deploys (by hand or from her pipeline), and --force goes past it
    assert lock_gate(redis_client, 42, "staging", "bob").passed
    mine = service.start(request(who="bob (auto-deploy)"))
    assert drive(service, mine).kind == "succeeded"
    forced = service.start(request(sha="def456", who="carol", force=True, reason="hotfix"))
    assert drive(service, forced).kind == "succeeded"
