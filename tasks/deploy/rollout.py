"""Deployment facts read the way kubectl reads them: rollout status, revisions, undo.

Pure functions over the API's JSON dicts, plus the two that need the adapter (revision lookup
and the undo patch).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

from tasks.deploy.kube import Kube, label_selector

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True)
class Rollout:
    state: Literal["progressing", "done", "failed"]
    message: str


def rollout_status(dep: dict) -> Rollout:
    """`kubectl rollout status` for a Deployment (kubectl/pkg/polymorphichelpers/rollout_status.go)."""
    meta, spec, st = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    name = meta.get("name", "?")
    if (st.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return Rollout("progressing", f'waiting for deployment "{name}" spec update to be observed')
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Rollout("failed", f'deployment "{name}" exceeded its progress deadline')
    desired = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
    updated = st.get("updatedReplicas") or 0
    replicas = st.get("replicas") or 0
    available = st.get("availableReplicas") or 0
    if updated < desired:
        return Rollout("progressing",
                       f'deployment "{name}": {updated} out of {desired} new replicas have been updated')
    if replicas > updated:
        return Rollout("progressing",
                       f'deployment "{name}": {replicas - updated} old replicas are pending termination')
    if available < updated:
        return Rollout("progressing",
                       f'deployment "{name}": {available} of {updated} updated replicas are available')
    return Rollout("done", f'deployment "{name}" successfully rolled out')


def revision_of(obj: dict) -> int:
    return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0") or 0)


def container_image(dep_or_template: dict, container: str) -> str | None:
    template = dep_or_template.get("spec", {}).get("template", dep_or_template)
    for c in (template.get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            return c.get("image")
    return None


def container_names(dep: dict) -> list[str]:
    return [c.get("name") for c in dep["spec"]["template"]["spec"].get("containers") or []]


def replica_sets_by_revision(kube: Kube, dep: dict) -> dict[int, dict]:
    """The Deployment's own ReplicaSets (by ownerReference), keyed by revision."""
    ns = dep["metadata"]["namespace"]
    uid = dep["metadata"]["uid"]
    selector = label_selector(dep["spec"]["selector"].get("matchLabels") or {})
    out: dict[int, dict] = {}
    for rs in kube.list_replica_sets(ns, selector):
        if any(ref.get("uid") == uid for ref in rs["metadata"].get("ownerReferences") or []):
            out[revision_of(rs)] = rs
    return out


def undo_template(kube: Kube, dep: dict, to_revision: int | None) -> tuple[int, dict]:
    """(revision, pod template) that `kubectl rollout undo [--to-revision]` would restore.

    The template comes from that revision's ReplicaSet with the controller-added
    `pod-template-hash` label stripped, so the Deployment controller re-adopts the same RS."""
    current = revision_of(dep)
    by_rev = replica_sets_by_revision(kube, dep)
    if to_revision is None:
        older = [r for r in by_rev if r < current]
        if not older:
            raise LookupError(f'deployment "{dep["metadata"]["name"]}" has no revision before {current}')
        to_revision = max(older)
    if to_revision not in by_rev:
        known = ", ".join(str(r) for r in sorted(by_rev)) or "none"
        raise LookupError(f'deployment "{dep["metadata"]["name"]}" has no revision {to_revision} '
                          f"(known: {known})")
    template = copy.deepcopy(by_rev[to_revision]["spec"]["template"])
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return to_revision, template


def undo_patch(template: dict, change_cause: str) -> list[dict]:
    """kubectl's undo is a JSON patch replacing spec.template; we also record why."""
    return [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "add", "path": "/metadata/annotations/kubernetes.io~1change-cause", "value": change_cause},
    ]
