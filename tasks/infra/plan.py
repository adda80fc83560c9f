"""`plan`: render the manifests at one SHA, dry-run apply each object, diff, store the plan."""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

from tasks.config.environments import EnvironmentConfig
from tasks.deploy.kube import KubeConflict, KubeInvalid, KubeNotFound
from tasks.infra import diff
from tasks.infra.manifests import RepoPort, load
from tasks.infra.store import Plan, PlanStore

FIELD_MANAGER = "devops-agent"


class KubePort(Protocol):
    def get_object(self, api_version: str, plural: str, namespace: str, name: str) -> dict: ...

    def list_objects(self, api_version: str, plural: str, namespace: str,
                     label_selector: str = "", limit: int = 500) -> list[dict]: ...

    def server_side_apply(self, obj: dict, plural: str, *, field_manager: str,
                          dry_run: bool, force: bool = False) -> dict: ...


def make_plan(repo: RepoPort, kube: KubePort, store: PlanStore, *, project: int, env: str,
              cfg: EnvironmentConfig, ref: str, sha: str, planned_by: str,
              now: float | None = None) -> Plan:
    """Plan `env` at `sha` (what `ref` pointed at when it was resolved). ManifestError when
    the manifests cannot be planned; Kube errors other than the API server refusing an object
    (no answer, forbidden) propagate: a plan is complete or not made."""
    assert cfg.manifests is not None
    rendered = load(repo, project, sha, ref, cfg.manifests, env=env, namespace=cfg.namespace)
    objects: list[dict[str, Any]] = []
    for p in rendered.objects:
        name = p.obj["metadata"]["name"]
        entry: dict[str, Any] = {"key": p.key, "where": p.where, "api_version": p.kind.api_version,
                                 "kind": p.kind.kind, "plural": p.kind.plural, "name": name,
                                 "obj": p.obj, "expected": None, "changes": [], "detail": ""}
        try:
            live: dict | None = kube.get_object(p.kind.api_version, p.kind.plural, cfg.namespace, name)
        except KubeNotFound:
            live = None
        # A server-side dry run, not a client-side diff: the answer carries the server's
        # defaults, admission and field ownership, so the plan shows what an apply would store
        # and the conflicts it would hit (force=false, like the apply itself).
        try:
            answer = kube.server_side_apply(p.obj, p.kind.plural, field_manager=FIELD_MANAGER,
                                            dry_run=True, force=False)
        except KubeConflict as exc:
            entry.update(status="conflict", detail=str(exc))
            objects.append(entry)
            continue
        except (KubeInvalid, KubeNotFound) as exc:
            entry.update(status="invalid", detail=str(exc))
            objects.append(entry)
            continue
        # a created object is shown whole in the full plan, not as a field list
        found = diff.changes(live, answer, secret=p.kind.kind == "Secret") if live else []
        entry["expected"] = diff.normalise(answer)
        entry["changes"] = [{"path": c.path, "before": c.before, "after": c.after} for c in found]
        entry["status"] = "created" if live is None else "changed" if found else "unchanged"
        objects.append(entry)
    plan = Plan(id=uuid.uuid4().hex[:10], project=project, env=env, ref=ref, sha=sha,
                digest=rendered.digest, planned_by=planned_by,
                planned_at=now if now is not None else time.time(), objects=objects,
                prune=prune_candidates(kube, store, project, env, cfg, objects))
    store.save(plan, cfg.manifests.plan_ttl)
    return plan


def prune_candidates(kube: KubePort, store: PlanStore, project: int, env: str,
                     cfg: EnvironmentConfig, objects: list[dict[str, Any]]) -> list[str]:
    """Objects in the namespace labelled for this environment that the plan does not hold,
    looked for among the kinds the plan holds and those the last apply held."""
    assert cfg.manifests is not None
    kinds = {(o["api_version"], o["kind"], o["plural"]) for o in objects}
    kinds |= {(k["api_version"], k["kind"], k["plural"]) for k in store.inventory(project, env)}
    planned = {o["key"] for o in objects}
    out: list[str] = []
    for api_version, kind, plural in sorted(kinds):
        try:
            items = kube.list_objects(api_version, plural, cfg.namespace,
                                      f"{cfg.manifests.label}={env}")
        except KubeNotFound:  # the kind is not served (any more): nothing of it to prune
            continue
        for item in items:
            key = f"{kind}/{(item.get('metadata') or {}).get('name')}"
            if key not in planned:
                out.append(key)
    return sorted(out)[:200]
