"""The blue-green strategy: the idle colour gets the new image and is verified before the
Service's selector moves; the old colour keeps running for an instant switch back."""

from __future__ import annotations

from tasks.config.environments import BlueGreenStrategy
from tasks.deploy.model import Step
from tasks.deploy.rollout import container_image, revision_of, rollout_status
from tasks.deploy.strategies.base import (
    Ctx,
    Failure,
    await_rollout,
    fill_for,
    get_checked,
    image_patch,
    verify,
)


def _bg(ctx: Ctx) -> BlueGreenStrategy:
    return ctx.cfg.strategy  # type: ignore[return-value]


def _colour_deployment(ctx: Ctx, colour: str) -> str:
    return _bg(ctx).deployment_pattern.format(deployment=ctx.cfg.deployment, color=colour)


def _live_colour(ctx: Ctx) -> tuple[str, dict]:
    st = _bg(ctx)
    selector = ctx.kube.get_service_selector(ctx.ns, st.service)
    colour = selector.get(st.color_label)
    if colour not in st.colors:
        raise Failure(f'service "{st.service}" selector {selector} has no {st.color_label} '
                      f"in {list(st.colors)}")
    return colour, selector


def bg_init(ctx: Ctx) -> Step | None:
    st = _bg(ctx)
    if "live" not in ctx.d:
        live, _ = _live_colour(ctx)
        ctx.d["live"] = live
        ctx.d["idle"] = st.colors[1] if live == st.colors[0] else st.colors[0]
    live_dep = get_checked(ctx, _colour_deployment(ctx, ctx.d["live"]))
    idle_name = _colour_deployment(ctx, ctx.d["idle"])
    get_checked(ctx, idle_name)
    replicas = max(1, live_dep["spec"].get("replicas") or 1)
    ctx.d.setdefault("previous_image", container_image(live_dep, ctx.cfg.container))
    ctx.d.setdefault("previous_revision", revision_of(live_dep))
    # The size the live colour serves at, before anything changes: a way back must find it
    # at least this big, whatever scaled it down meanwhile (an autoscaler once traffic left).
    ctx.d.setdefault("live_replicas", replicas)
    ctx.kube.patch_deployment(ctx.ns, idle_name, image_patch(ctx, ctx.rec.image, replicas=replicas))
    ctx.d["mutated"] = True
    ctx.note(f"bringing up idle colour {ctx.d['idle']} ({idle_name}) with {ctx.rec.image}, "
             f"{replicas} replicas; "
             f"{ctx.d['live']} keeps serving {ctx.d['previous_image']}")
    ctx.rec.phase = "bg_rollout"
    return Step.wait(ctx.t.poll_interval)


def bg_rollout(ctx: Ctx) -> Step | None:
    step = await_rollout(ctx, _colour_deployment(ctx, ctx.d["idle"]), "rollout_deadline")
    if step:
        return step
    ctx.note(f"idle colour {ctx.d['idle']} is ready; verifying it before any traffic moves")
    ctx.rec.phase = "bg_verify"
    return None


def bg_verify(ctx: Ctx) -> Step | None:
    next_phase = "bg_await_promote" if _bg(ctx).switch_traffic == "manual" else "bg_switch"
    return verify(ctx, "idle", fill_for(ctx, color=ctx.d["idle"]), on_pass=next_phase, on_fail="bg_abort")


def bg_await_promote(ctx: Ctx) -> Step | None:
    if ctx.rec.promote_requested:
        ctx.rec.promote_requested = False
        ctx.note("promote received: switching traffic")
        ctx.rec.phase = "bg_switch"
        return None
    ctx.d["pause_resume"] = "bg_switch"
    return Step.paused(f"{ctx.d['idle']} runs {ctx.rec.image} and passed its checks; "
                       f"reply `promote` to switch traffic or `rollback` to drop it")


def _switch(ctx: Ctx, to: str, *, require_image: str | None) -> None:
    """Point the Service at colour `to`, but only if that colour is fully rolled out (and runs
    the expected image): the selector must never name a colour that is not ready."""
    st = _bg(ctx)
    live, selector = _live_colour(ctx)
    if live == to:
        return  # already switched (a re-run after a crash)
    dep = ctx.kube.read_deployment_status(ctx.ns, _colour_deployment(ctx, to))
    status = rollout_status(dep)
    image = container_image(dep, ctx.cfg.container)
    if status.state != "done" or not (dep["spec"].get("replicas") or 0) or \
            (require_image and image != require_image):
        raise Failure(f"refusing to switch traffic to {to}: {status.message}, "
                      f"{dep['spec'].get('replicas') or 0} replicas, image {image}")
    ctx.kube.set_service_selector(ctx.ns, st.service, {**selector, st.color_label: to}, expect=selector)


def bg_switch(ctx: Ctx) -> Step | None:
    _switch(ctx, ctx.d["idle"], require_image=ctx.rec.image)
    ctx.d["switched"] = True
    ctx.note(f"traffic switched: service {_bg(ctx).service} now selects {ctx.d['idle']}")
    ctx.rec.phase = "bg_post_verify"
    return None


def bg_post_verify(ctx: Ctx) -> Step | None:
    return verify(ctx, "live", fill_for(ctx, color=ctx.d["idle"]), on_pass="done", on_fail="bg_switch_back")


def bg_switch_back(ctx: Ctx) -> Step | None:
    """Traffic moved and something failed: flip back to the old colour, kept running for this."""
    old = ctx.d["live"]
    name = _colour_deployment(ctx, old)
    if _restore_capacity(ctx, name, ctx.d.get("live_replicas") or 1, old):
        return Step.wait(ctx.t.poll_interval)
    step = await_rollout(ctx, name, "rollback_deadline")
    if step:
        return step
    _switch(ctx, old, require_image=None)
    ctx.d["switched"] = False
    ctx.note(f"traffic switched back to {old} ({ctx.d.get('previous_image')})")
    ctx.rec.phase = "rolled_back"
    return None


def _restore_capacity(ctx: Ctx, name: str, replicas: int, colour: str) -> bool:
    """Scale colour `name` up to `replicas` if something scaled it below; True if it did."""
    have = ctx.kube.get_deployment(ctx.ns, name)["spec"].get("replicas") or 0
    if have >= replicas:
        return False
    ctx.kube.scale_deployment(ctx.ns, name, replicas)
    ctx.note(f"{colour} was scaled down to {have}; scaling it back to {replicas} replicas before "
             f"it takes traffic again")
    return True


def bg_abort(ctx: Ctx) -> Step | None:
    """Failed before any traffic moved (or asked to drop it): scale the idle colour down."""
    if ctx.d.get("switched"):
        ctx.rec.phase = "bg_switch_back"
        return None
    live, _ = _live_colour(ctx)
    idle = ctx.d.get("idle")
    if idle and live != idle and ctx.d.get("mutated"):
        ctx.kube.scale_deployment(ctx.ns, _colour_deployment(ctx, idle), 0)
        ctx.note(f"scaled idle colour {idle} to 0; traffic never left {live}")
    elif idle and live == idle:  # a crash between switch and save: treat as switched
        ctx.d["switched"] = True
        ctx.rec.phase = "bg_switch_back"
        return None
    ctx.rec.phase = "rolled_back"
    return None


def bg_flip(ctx: Ctx) -> Step | None:
    """Manual rollback for blue-green: traffic back to the other colour (scaled up if needed)."""
    st = _bg(ctx)
    if "live" not in ctx.d:
        live, _ = _live_colour(ctx)
        ctx.d["live"] = live
        ctx.d["target"] = st.colors[1] if live == st.colors[0] else st.colors[0]
        ctx.d["previous_image"] = container_image(ctx.kube.get_deployment(
            ctx.ns, _colour_deployment(ctx, live)), ctx.cfg.container)
    target = ctx.d["target"]
    name = _colour_deployment(ctx, target)
    if "live_replicas" not in ctx.d:
        live_dep = ctx.kube.get_deployment(ctx.ns, _colour_deployment(ctx, ctx.d["live"]))
        ctx.d["live_replicas"] = max(1, live_dep["spec"].get("replicas") or 1)
    # the colour taking the traffic back must be as big as the one serving it now
    if _restore_capacity(ctx, name, ctx.d["live_replicas"], target):
        return Step.wait(ctx.t.poll_interval)
    step = await_rollout(ctx, name, "rollback_deadline")
    if step:
        return step
    _switch(ctx, target, require_image=None)
    image = container_image(ctx.kube.get_deployment(ctx.ns, name), ctx.cfg.container)
    ctx.d["restored"] = {"image": image, "color": target}
    ctx.note(f"traffic switched back to {target} ({image}); {ctx.d['live']} kept for a re-promote")
    ctx.rec.phase = "rolled_back"
    return None
