"""The rolling strategy: one Deployment, patched to the new image, followed like `kubectl rollout
status`, verified, and undone to the revision it replaced (canary environments undo this way too
once the stable Deployment changed)."""

from __future__ import annotations

from tasks.config.environments import CanaryStrategy, RollingStrategy
from tasks.deploy.model import Step
from tasks.deploy.rollout import container_image, revision_of
from tasks.deploy.strategies.base import (
    Ctx,
    await_rollout,
    fill_for,
    get_checked,
    image_patch,
    scale_canary_to_zero,
    undo,
    verify,
)


def rolling_init(ctx: Ctx) -> Step | None:
    st: RollingStrategy = ctx.cfg.strategy  # type: ignore[assignment]
    dep = get_checked(ctx, ctx.cfg.deployment)
    if "previous_revision" not in ctx.d:
        # persist what to roll back to BEFORE changing anything: if this worker dies right after
        # the patch, a re-run would otherwise read our own new revision as "previous"
        ctx.d["previous_image"] = container_image(dep, ctx.cfg.container)
        ctx.d["previous_revision"] = revision_of(dep)
        ctx.d["mutated"] = True
        ctx.checkpoint()
    patch = image_patch(ctx, ctx.rec.image, extra_spec={"strategy": {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": st.max_surge, "maxUnavailable": st.max_unavailable}}})
    ctx.kube.patch_deployment(ctx.ns, ctx.cfg.deployment, patch)
    ctx.d["mutated"] = True
    ctx.note(f"set {ctx.cfg.deployment}/{ctx.cfg.container} image to {ctx.rec.image} "
             f"(was {ctx.d['previous_image']}, revision {ctx.d['previous_revision']}); rolling update "
             f"maxSurge {st.max_surge}, maxUnavailable {st.max_unavailable}")
    ctx.rec.phase = "rollout"
    return Step.wait(ctx.t.poll_interval)


def rolling_rollout(ctx: Ctx) -> Step | None:
    step = await_rollout(ctx, ctx.cfg.deployment, "rollout_deadline")
    if step:
        return step
    dep = ctx.kube.get_deployment(ctx.ns, ctx.cfg.deployment)
    ctx.d["new_revision"] = revision_of(dep)
    ctx.note(f"rolled out: revision {revision_of(dep)} of {ctx.cfg.deployment} is live")
    ctx.rec.phase = "verify"
    return None


def rolling_verify(ctx: Ctx) -> Step | None:
    return verify(ctx, "rolling", fill_for(ctx), on_pass="done", on_fail="rollback")


def rolling_rollback(ctx: Ctx) -> Step | None:
    """Automatic or requested undo of this deploy: back to the revision we replaced."""
    target = ctx.d.get("previous_revision") if ctx.rec.kind == "deploy" else ctx.rec.revision
    name = ctx.cfg.deployment
    if ctx.rec.kind == "deploy" and not ctx.d.get("mutated"):
        ctx.rec.phase = "rolled_back"
        return None
    revision, image = undo(ctx, name, target or None)
    if isinstance(ctx.cfg.strategy, CanaryStrategy):
        scale_canary_to_zero(ctx)
        total = ctx.d.get("total")
        if total is not None:
            ctx.kube.scale_deployment(ctx.ns, name, total)
    ctx.d["restored"] = {"revision": revision, "image": image}
    ctx.note(f"rolling back {name} to revision {revision} ({image})")
    ctx.rec.phase = "rollback_wait"
    return Step.wait(ctx.t.poll_interval)


def rolling_rollback_wait(ctx: Ctx) -> Step | None:
    step = await_rollout(ctx, ctx.cfg.deployment, "rollback_deadline")
    if step:
        return step
    restored = ctx.d.get("restored", {})
    ctx.note(f"rolled back: {ctx.cfg.deployment} runs {restored.get('image')} again")
    ctx.rec.phase = "rolled_back"
    return None
