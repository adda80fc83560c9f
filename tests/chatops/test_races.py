"""Check-then-act races in ChatOps and deploy state, each run from two sides at once."""

from __future__ import annotations

import threading

import orjson

from tasks.deploy import keys
from tasks.deploy.store import DeployStore


def _both(first, second) -> None:
    start = threading.Barrier(2)

    def run(fn):
        start.wait()
        fn()

    threads = [threading.Thread(target=run, args=(f,)) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


def test_unlock_never_deletes_a_lock_taken_after_it_looked(redis_client):
    key = keys.manual_lock(15, "production")
    old = orjson.dumps({"user": "alice", "reason": "db"})
    redis_client.set(key, old)
    seen = redis_client.get(key)  # unlock read this
    new = orjson.dumps({"user": "bob", "reason": "release"})
    redis_client.set(key, new)  # bob unlocked and re-locked meanwhile
    assert DeployStore(redis_client).unlock_manually(15, "production", seen) is False
    assert redis_client.get(key) == new


def test_an_abort_is_never_lost_to_a_concurrent_step(redis_client):
    """advance() loads, works, saves under the step mutex; rollback() writes the abort flag
    under the same mutex, so whichever comes second sees the other's write."""
    from tasks.deploy.model import DeployRecord
    from tasks.deploy.requests import DeployRequest
    from tasks.deploy.service import DeployService
    from tasks.deploy.store import DeployStore

    class Cfg:
        class strategy:
            type = "rolling"

    svc = DeployService(redis_client, {"staging": Cfg()})
    store = DeployStore(redis_client)
    for round_ in range(20):
        rec = DeployRecord(id=f"d{round_}", kind="deploy", project="15", env="staging",
                           strategy="rolling", requested_by="a", phase="rollout")
        store.save(rec)
        assert store.acquire("15", "staging", rec.id, 60)

        def step():  # what advance() does with the mutex held: load, work, save
            token = store.step_mutex(rec.id, 5)
            if token is None:
                return
            try:
                loaded = store.load(rec.id)
                loaded.data["polls"] = loaded.data.get("polls", 0) + 1
                store.save(loaded)
            finally:
                store.step_done(rec.id, token)

        _both(step, lambda: svc.rollback(DeployRequest(action="rollback", project="15", env="staging",
                                                         requested_by="bob")))
        assert store.load(rec.id).abort_requested.startswith("rollback requested by bob")
        store.release("15", "staging", rec.id)


def test_two_pipelines_of_one_ref_recorded_at_once_keep_the_newer(redis_client):
    from tasks.platform.store import Store

    for round_ in range(30):
        ref = f"r{round_}"
        store_a, store_b = Store(redis_client), Store(redis_client)
        _both(lambda: store_a.record_pipeline(15, ref, 101, {"status": "failed"}),
              lambda: store_b.record_pipeline(15, ref, 102, {"status": "success"}))
        state = Store(redis_client).ref_state(15, ref)
        assert (state["pipeline"], state["status"]) == (102, "success")
