"""What an environment ran and runs: its rollout revisions (and which failed their checks here),
the target a rollback will restore, and what the pods run now, all read from the cluster.

The service (tasks/deploy/service.py) calls these under the environment lock when a rollback's
target is checked, and without it for `/devops status`.
"""

from __future__ import annotations

from typing import Any

from tasks.config.environments import BlueGreenStrategy, CanaryStrategy, EnvironmentConfig
from tasks.deploy.kube import Kube, KubeError
from tasks.deploy.model import DeployError, DeployRecord
from tasks.deploy.requests import DeployRequest
from tasks.deploy.rollout import container_image, replica_sets_by_revision, revision_of, rollout_status
from tasks.deploy.store import DeployStore


def failed_images(store: DeployStore, project: str, env: str) -> dict[str, DeployRecord]:
    """Images whose latest deploy to the environment failed its checks after changing the
    cluster (rolled back automatically, or its undo failed), with that deploy."""
    seen: dict[str, DeployRecord | None] = {}
    for rec in store.history(str(project), env):
        if rec.kind != "deploy" or not rec.image or rec.image in seen:
            continue
        failed = (rec.status in ("rolled_back", "failed") and not rec.abort_requested
                  and rec.data.get("mutated") and rec.data.get("failure"))
        if rec.status == "succeeded" or failed:
            seen[rec.image] = rec if failed else None
    return {image: rec for image, rec in seen.items() if rec is not None}


def revisions(kube: Kube, cfg: EnvironmentConfig, dep: dict,
              bad: dict[str, DeployRecord]) -> list[dict]:
    """The Deployment's rollout revisions, newest first: revision, image, live, and `failed`
    (deploy id and reason) when that image failed its checks here."""
    current = revision_of(dep)
    out = []
    for revision, rs in sorted(replica_sets_by_revision(kube, dep).items(), reverse=True):
        image = container_image(rs["spec"]["template"], cfg.container) or "?"
        row: dict = {"revision": revision, "image": image, "live": revision == current}
        if image in bad:
            row["failed"] = f"{bad[image].id}: {bad[image].data.get('failure') or bad[image].reason}"
        out.append(row)
    return out


def describe(row: dict) -> str:
    """One revision for a person: `3 registry/app:v1 (live)`."""
    extra = " (current)" if row.get("live") else ""
    if row.get("failed"):
        extra += f" (failed its checks in deploy {row['failed'].split(':', 1)[0]})"
    return f"{row['revision']} `{row['image']}`{extra}"


def colour_image(kube: Kube, cfg: EnvironmentConfig, colour: str) -> str:
    st: BlueGreenStrategy = cfg.strategy  # type: ignore[assignment]
    dep = kube.get_deployment(cfg.namespace, st.deployment_pattern.format(deployment=cfg.deployment,
                                                                          color=colour))
    return container_image(dep, cfg.container) or "?"


def rollback_target(kube_for_env: Any, cfg: EnvironmentConfig, rec: DeployRecord,
                    request: DeployRequest, bad: dict[str, DeployRecord]) -> dict:
    """What the rollback will restore, refused (DeployError) if it does not exist or failed
    its checks here (unless forced). `kube_for_env()` gives the cluster client; `bad` is
    `failed_images` of the environment."""
    suggestion = ""
    try:
        kube = kube_for_env()
        if isinstance(cfg.strategy, BlueGreenStrategy):
            st = cfg.strategy
            live = kube.get_service_selector(cfg.namespace, st.service).get(st.color_label)
            if live not in st.colors:
                raise DeployError(f'service "{st.service}" selects no colour of {list(st.colors)}')
            other = st.colors[1] if live == st.colors[0] else st.colors[0]
            target: dict[str, Any] = {"color": other, "image": colour_image(kube, cfg, other)}
            listing = (f"Colours: {live} runs {colour_image(kube, cfg, live)} (live), "
                       f"{other} runs {target['image']}")
        else:
            dep = kube.get_deployment(cfg.namespace, cfg.deployment)
            rows = revisions(kube, cfg, dep, bad)
            current = revision_of(dep)
            listing = "Revisions: " + ("; ".join(describe(r) for r in rows) or "none")
            older = [r["revision"] for r in rows if r["revision"] < current]
            wanted = rec.revision if rec.revision is not None else max(older, default=None)
            found = next((r for r in rows if r["revision"] == wanted), None)
            if wanted is None:
                raise DeployError(f"{rec.env} has no revision before {current} to roll back to. "
                                  f"{listing}")
            if found is None:
                raise DeployError(f"{rec.env} has no revision {wanted}. {listing}")
            if wanted == current:
                raise DeployError(f"revision {wanted} is what {rec.env} runs now. {listing}")
            target = {"revision": wanted, "image": found["image"]}
            good = [r["revision"] for r in rows if r["revision"] < current and not r.get("failed")]
            if good:
                suggestion = (f" `rollback {rec.env} {max(good)}` goes to the newest one that did "
                              "not fail.")
    except KubeError as e:
        raise DeployError(f"cannot read {rec.env}'s revisions to check the rollback target: "
                          f"{e}") from None
    failed = bad.get(target["image"])
    if failed is not None:
        where = f"revision {target['revision']}" if "revision" in target else target["color"]
        why = (f"{where} runs {target['image']}, which failed its checks here in deploy "
               f"`{failed.id}` ({failed.data.get('failure') or failed.reason})")
        if not request.force:
            raise DeployError(f"{why}. Going back to it needs --force \"reason\".{suggestion} "
                              f"{listing}")
        target["failed"] = why
    return target


def serving(kube: Kube, cfg: EnvironmentConfig, dep: dict) -> list[dict]:
    """What the pods run, newest revision first: the spec names what a rollout is heading
    for, the ReplicaSets with pods say what runs (old and new side by side mid-rollout)."""
    out = []
    for revision, rs in sorted(replica_sets_by_revision(kube, dep).items(), reverse=True):
        st = rs.get("status") or {}
        if (rs["spec"].get("replicas") or 0) or st.get("replicas"):
            out.append({"revision": revision,
                        "image": container_image(rs["spec"]["template"], cfg.container),
                        "replicas": rs["spec"].get("replicas") or 0,
                        "ready": st.get("readyReplicas") or 0})
    return out


def live(kube_for_env: Any, cfg: EnvironmentConfig) -> dict:
    """What runs now (one or two API reads); `{"error": ...}` when the cluster cannot say."""
    try:
        kube = kube_for_env()
        name = cfg.deployment
        out: dict = {}
        if isinstance(cfg.strategy, BlueGreenStrategy):
            sel = kube.get_service_selector(cfg.namespace, cfg.strategy.service)
            colour = sel.get(cfg.strategy.color_label, "")
            out["color"] = colour
            name = cfg.strategy.deployment_pattern.format(deployment=cfg.deployment, color=colour)
            others = [c for c in cfg.strategy.colors if c != colour]
            if others:
                try:
                    idle = kube.get_deployment(cfg.namespace, cfg.strategy.deployment_pattern.format(
                        deployment=cfg.deployment, color=others[0]))
                    out["idle"] = {"color": others[0], "image": container_image(idle, cfg.container),
                                   "replicas": idle["spec"].get("replicas")}
                except KubeError:
                    out["idle"] = None
        dep = kube.read_deployment_status(cfg.namespace, name)
        out.update(deployment=name, image=container_image(dep, cfg.container), revision=revision_of(dep),
                   replicas=dep["spec"].get("replicas"),
                   ready=(dep.get("status") or {}).get("readyReplicas", 0),
                   rollout=rollout_status(dep).message, serving=serving(kube, cfg, dep))
        if isinstance(cfg.strategy, CanaryStrategy):
            try:
                canary = kube.read_deployment_status(
                    cfg.namespace, cfg.strategy.canary_deployment.format(deployment=cfg.deployment))
                out["canary"] = {"image": container_image(canary, cfg.container),
                                 "replicas": canary["spec"].get("replicas")}
            except KubeError:
                out["canary"] = None
        return out
    except (KubeError, DeployError) as e:
        return {"error": str(e)}
