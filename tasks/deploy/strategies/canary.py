"""The canary strategy: a canary Deployment beside the stable one, its share of pods raised step
by step while the checks run, then the stable Deployment promoted to the new image."""

from __future__ import annotations

import copy
import math

from tasks.config.environments import CanaryStrategy
from tasks.deploy.kube import KubeNotFound
from tasks.deploy.model import Step
from tasks.deploy.rollout import container_image, revision_of
from tasks.deploy.strategies.base import (
    Ctx,
    await_rollout,
    canary_name,
    canary_strategy,
    fill_for,
    get_checked,
    image_patch,
    scale_canary_to_zero,
    verify,
)


def canary_init(ctx: Ctx) -> Step | None:
    st = canary_strategy(ctx)
    stable = get_checked(ctx, ctx.cfg.deployment)
    ctx.d.setdefault("total", max(1, stable["spec"].get("replicas") or 1))
    ctx.d.setdefault("previous_image", container_image(stable, ctx.cfg.container))
    ctx.d.setdefault("previous_revision", revision_of(stable))
    name = canary_name(ctx)
    try:
        ctx.kube.get_deployment(ctx.ns, name)
        ctx.kube.patch_deployment(ctx.ns, name, image_patch(ctx, ctx.rec.image, replicas=0))
    except KubeNotFound:
        ctx.kube.create_deployment(ctx.ns, _canary_body(ctx, stable, name, st))
        ctx.note(f"created canary deployment {name} beside {ctx.cfg.deployment}")
    ctx.d["mutated"] = True
    ctx.d["weight"] = st.initial_weight
    ctx.rec.phase = "canary_scale"
    return None


def _canary_body(ctx: Ctx, stable: dict, name: str, st: CanaryStrategy) -> dict:
    labels = {**(stable["metadata"].get("labels") or {}), st.track_label: "canary"}
    template = copy.deepcopy(stable["spec"]["template"])
    template.setdefault("metadata", {})["labels"] = {**(template["metadata"].get("labels") or {}),
                                                     st.track_label: "canary"}
    for c in template["spec"]["containers"]:
        if c["name"] == ctx.cfg.container:
            c["image"] = ctx.rec.image
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ctx.ns, "labels": labels,
                         "annotations": {"kubernetes.io/change-cause": ctx.change_cause(ctx.rec.image)}},
            "spec": {"replicas": 0,
                     "selector": {"matchLabels": {**stable["spec"]["selector"]["matchLabels"],
                                                  st.track_label: "canary"}},
                     "template": template,
                     "strategy": copy.deepcopy(stable["spec"].get("strategy") or {})}}


def _canary_replicas(ctx: Ctx) -> int:
    return min(ctx.d["total"], max(1, math.ceil(ctx.d["total"] * ctx.d["weight"] / 100)))


def canary_scale(ctx: Ctx) -> Step | None:
    n = _canary_replicas(ctx)
    ctx.kube.scale_deployment(ctx.ns, canary_name(ctx), n)
    ctx.note(f"canary at {ctx.d['weight']}%: {n} canary pod(s) of {ctx.d['total']}")
    ctx.rec.phase = "canary_wait"
    return Step.wait(ctx.t.poll_interval)


def canary_wait(ctx: Ctx) -> Step | None:
    step = await_rollout(ctx, canary_name(ctx), "rollout_deadline")
    if step:
        return step
    # the traffic share is the replica ratio: shrink stable only once the canary pods are ready
    ctx.kube.scale_deployment(ctx.ns, ctx.cfg.deployment, max(0, ctx.d["total"] - _canary_replicas(ctx)))
    ctx.d["step_started"] = ctx.now
    ctx.rec.phase = "canary_analyze"
    return None


def canary_analyze(ctx: Ctx) -> Step | None:
    st = canary_strategy(ctx)
    elapsed = ctx.now - ctx.d["step_started"]
    final = elapsed >= st.interval
    weight = ctx.d["weight"]
    next_weight = weight + st.step_weight
    on_pass = "canary_promote" if next_weight >= 100 else "canary_scale"
    step = verify(ctx, f"weight-{weight}", fill_for(ctx, track="canary", deployment=canary_name(ctx)),
                   final=final, on_pass=on_pass, on_fail="canary_abort")
    if ctx.rec.phase == on_pass and on_pass == "canary_scale":
        ctx.d["weight"] = next_weight
    if step and step.kind == "wait":
        return Step.wait(min(ctx.cfg.verification.interval, max(0.0, st.interval - elapsed)))
    return step


def canary_promote(ctx: Ctx) -> Step | None:
    ctx.kube.patch_deployment(ctx.ns, ctx.cfg.deployment,
                              image_patch(ctx, ctx.rec.image, replicas=ctx.d["total"]))
    ctx.d["promoted"] = True
    ctx.note(f"promoting: {ctx.cfg.deployment} gets {ctx.rec.image} at {ctx.d['total']} replicas")
    ctx.rec.phase = "canary_promote_wait"
    return Step.wait(ctx.t.poll_interval)


def canary_promote_wait(ctx: Ctx) -> Step | None:
    step = await_rollout(ctx, ctx.cfg.deployment, "promote_deadline")
    if step:
        return step
    scale_canary_to_zero(ctx)
    ctx.note(f"promoted: {ctx.cfg.deployment} runs {ctx.rec.image}; canary scaled to 0")
    ctx.rec.phase = "done"
    return None


def canary_abort(ctx: Ctx) -> Step | None:
    if ctx.d.get("promoted"):  # the stable Deployment already changed: undo it like rolling
        ctx.rec.phase = "rollback"
        return None
    scale_canary_to_zero(ctx)
    if "total" in ctx.d:
        ctx.kube.scale_deployment(ctx.ns, ctx.cfg.deployment, ctx.d["total"])
    ctx.note(f"aborted canary: canary scaled to 0, {ctx.cfg.deployment} back to {ctx.d.get('total')} "
             f"replicas of {ctx.d.get('previous_image')}")
    ctx.rec.phase = "canary_abort_wait"
    return Step.wait(ctx.t.poll_interval)


def canary_abort_wait(ctx: Ctx) -> Step | None:
    step = await_rollout(ctx, ctx.cfg.deployment, "rollback_deadline")
    if step:
        return step
    ctx.rec.phase = "rolled_back"
    return None
