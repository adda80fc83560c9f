"""`apply`: exactly the stored plan, under the environment's deploy lock, each object confirmed
by the API server, then the rollouts of the workloads it changed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from tasks.config.environments import EnvironmentConfig
from tasks.deploy.kube import KubeError, KubeNotFound, KubeUnavailable
from tasks.deploy.rollout import rollout_status
from tasks.infra.diff import applied_matches
from tasks.infra.plan import FIELD_MANAGER, KubePort
from tasks.infra.store import Plan


class ApplyKube(KubePort, Protocol):
    def get_deployment(self, namespace: str, name: str) -> dict: ...


class LockPort(Protocol):
    """The deploy lock (tasks/deploy/store.DeployStore): a deploy and an apply never overlap."""

    def acquire(self, project: str, env: str, deploy_id: str, ttl: float) -> bool: ...

    def holder(self, project: str, env: str) -> str | None: ...

    def release(self, project: str, env: str, deploy_id: str) -> None: ...


def lock_holder(plan: Plan) -> str:
    return f"infra-apply:{plan.id}"


def apply_plan(kube: ApplyKube, locks: LockPort, plan: Plan, cfg: EnvironmentConfig, *,
               resume: bool = False, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Apply `plan`'s created and changed objects in order, stopping at the first the API
    server refuses; `resume` (an earlier attempt died midway) reads each object back first
    and applies only those not already as planned. Returns {outcome, headline, objects,
    rollouts}; outcome "locked" when the environment is held (nothing was sent)."""
    holder = lock_holder(plan)
    ttl = cfg.timings.rollout_timeout + 300.0
    if not locks.acquire(str(plan.project), plan.env, holder, ttl):
        return {"outcome": "locked", "headline": f"`{plan.env}` is held by "
                f"`{locks.holder(str(plan.project), plan.env)}` (a deploy, rollback or apply); "
                "nothing was applied. Try again when it has finished.", "objects": [],
                "rollouts": []}
    try:
        results, failed = [], False
        for o in plan.objects:
            key = o["key"]
            if failed:
                results.append({"key": key, "status": "not applied",
                                "detail": "not sent: an earlier object failed"})
                continue
            if o["status"] == "unchanged":
                results.append({"key": key, "status": "unchanged", "detail": "nothing to change"})
                continue
            status = "created" if o["status"] == "created" else "configured"
            if resume and _already(kube, o, cfg.namespace):
                results.append({"key": key, "status": status,
                                "detail": "read back: already as planned (an earlier attempt "
                                          "applied it)"})
                continue
            one = _apply_one(kube, o, cfg.namespace, status)
            results.append(one)
            failed = one["status"] in ("failed", "unconfirmed")
        rollouts = [] if failed else _rollouts(kube, plan, cfg, results, clock, sleep)
    finally:
        locks.release(str(plan.project), plan.env, holder)
    applied = sum(1 for r in results if r["status"] in ("created", "configured"))
    bad_rollouts = [r for r in rollouts if r["state"] != "done"]
    if failed:
        outcome = "failed"
        headline = (f"stopped: {applied} object(s) applied, then the API server refused or did "
                    "not confirm one; the rest were not sent.")
    elif bad_rollouts:
        outcome = "failed"
        headline = (f"{applied} object(s) applied, but {len(bad_rollouts)} rollout(s) did not "
                    "complete.")
    else:
        outcome = "applied"
        headline = f"{applied} object(s) applied" + (
            f", {len(rollouts)} rollout(s) complete." if rollouts else ".")
    return {"outcome": outcome, "headline": headline, "objects": results, "rollouts": rollouts}


def _apply_one(kube: ApplyKube, o: dict[str, Any], namespace: str, status: str) -> dict[str, Any]:
    key = o["key"]
    try:
        answer = kube.server_side_apply(o["obj"], o["plural"], field_manager=FIELD_MANAGER,
                                        dry_run=False, force=False)
    except KubeUnavailable as exc:
        # No answer: the apply may or may not have been stored. Read the object back instead of
        # sending it again; only what the server shows counts.
        if _already(kube, o, namespace):
            return {"key": key, "status": status,
                    "detail": f"read back after no answer ({str(exc)[:120]}): as planned"}
        return {"key": key, "status": "unconfirmed",
                "detail": f"no answer ({str(exc)[:160]}), and reading it back does not show the "
                          "planned fields; not sent again. Plan again to see where it stands."}
    except KubeError as exc:
        return {"key": key, "status": "failed", "detail": str(exc)[:400]}
    rv = (answer.get("metadata") or {}).get("resourceVersion")
    if not applied_matches(o["expected"] or {}, answer):
        return {"key": key, "status": "configured" if status == "configured" else status,
                "detail": f"stored (resourceVersion {rv}); the server changed some planned "
                          "fields meanwhile (another manager, or defaults)"}
    return {"key": key, "status": status, "detail": f"resourceVersion {rv}"}


def _already(kube: ApplyKube, o: dict[str, Any], namespace: str) -> bool:
    try:
        live = kube.get_object(o["api_version"], o["plural"], namespace, o["name"])
    except KubeNotFound:
        return False
    except KubeError:
        return False
    return applied_matches(o["expected"] or {}, live)


def _rollouts(kube: ApplyKube, plan: Plan, cfg: EnvironmentConfig, results: list[dict[str, Any]],
              clock: Callable[[], float], sleep: Callable[[float], None]) -> list[dict[str, Any]]:
    """Wait for the Deployments and StatefulSets this apply created or changed, as kubectl
    rollout status reads them, within the environment's rollout timeout."""
    done = {r["key"] for r in results if r["status"] in ("created", "configured")}
    workloads = [o for o in plan.objects if o["key"] in done
                 and o["kind"] in ("Deployment", "StatefulSet")]
    out = []
    deadline = clock() + cfg.timings.rollout_timeout
    for o in workloads:
        state, message = "progressing", ""
        while True:
            try:
                if o["kind"] == "Deployment":
                    r = rollout_status(kube.get_deployment(cfg.namespace, o["name"]))
                    state, message = r.state, r.message
                else:
                    state, message = statefulset_status(
                        kube.get_object("apps/v1", "statefulsets", cfg.namespace, o["name"]))
            except KubeError as exc:
                state, message = "progressing", f"cannot read it: {str(exc)[:160]}"
            if state != "progressing" or clock() > deadline:
                break
            sleep(cfg.timings.poll_interval)
        if state == "progressing":
            state, message = "failed", f"not done within {cfg.timings.rollout_timeout:g}s: {message}"
        out.append({"key": o["key"], "state": state, "message": message})
    return out


def statefulset_status(sts: dict) -> tuple[str, str]:
    """`kubectl rollout status` for a RollingUpdate StatefulSet."""
    meta, spec, st = sts.get("metadata") or {}, sts.get("spec") or {}, sts.get("status") or {}
    name = meta.get("name", "?")
    if (st.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return "progressing", f'waiting for statefulset "{name}" spec update to be observed'
    want = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
    if (st.get("readyReplicas") or 0) < want:
        return "progressing", f"{st.get('readyReplicas') or 0} of {want} pods are ready"
    if st.get("updateRevision") and st.get("currentRevision") != st.get("updateRevision"):
        return "progressing", f"{st.get('updatedReplicas') or 0} of {want} pods updated"
    return "done", f'statefulset "{name}" rolling update complete'
