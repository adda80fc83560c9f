"""The deploy state machine's phases, one small function each.

A phase handler reads the world, makes at most a few API calls, updates `ctx.rec` (phase and
scratch data) and returns a Step, or None to run the next phase in the same `advance`. Every
handler must be safe to run twice: a worker may die after its API call and before the record
is saved, and the next worker re-runs the same phase. So writes are absolute ("image = X",
"replicas = N", "selector = green"), never relative, and a handler first checks whether its
effect is already there.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

from tasks.config.environments import BlueGreenStrategy, CanaryStrategy, EnvironmentConfig, RollingStrategy
from tasks.deploy.checks import verify_round
from tasks.deploy.kube import Kube, KubeNotFound
from tasks.deploy.model import DeployRecord, Step
from tasks.deploy.rollout import (
    container_image,
    container_names,
    revision_of,
    rollout_status,
    undo_patch,
    undo_template,
)


class Failure(Exception):
    """The deploy cannot go on; the service rolls back (or fails, if nothing changed yet)."""


@dataclass
class Ctx:
    rec: DeployRecord
    cfg: EnvironmentConfig
    kube: Kube
    now: float
    note: Callable[[str], None]  # timeline entry + progress report
    checkpoint: Callable[[], None] = lambda: None  # persist the record now (before a mutation)

    @property
    def ns(self) -> str:
        return self.cfg.namespace

    @property
    def d(self) -> dict:
        return self.rec.data

    @property
    def t(self):  # timings
        return self.cfg.timings

    def change_cause(self, what: str) -> str:
        return f"devops-agent {self.rec.id}: {what}"


Handler = Callable[[Ctx], "Step | None"]


# ------------------------------------------------------------------------------- shared

def _image_patch(ctx: Ctx, image: str, replicas: int | None = None, extra_spec: dict | None = None) -> dict:
    spec: dict = {"template": {"spec": {"containers": [{"name": ctx.cfg.container, "image": image}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    spec.update(extra_spec or {})
    return {"metadata": {"annotations": {"kubernetes.io/change-cause": ctx.change_cause(image)}},
            "spec": spec}


def _get(ctx: Ctx, name: str) -> dict:
    dep = ctx.kube.get_deployment(ctx.ns, name)
    if ctx.cfg.container not in container_names(dep):
        raise Failure(f'deployment "{name}" has no container "{ctx.cfg.container}" '
                      f"(it has: {', '.join(container_names(dep))})")
    return dep


def _await_rollout(ctx: Ctx, name: str, deadline_key: str) -> Step | None:
    """None when the rollout is complete; Step.wait while it progresses; Failure otherwise."""
    dep = ctx.kube.read_deployment_status(ctx.ns, name)
    status = rollout_status(dep)
    if status.state == "done":
        ctx.d.pop(deadline_key, None)
        return None
    if status.state == "failed":
        raise Failure(status.message)
    deadline = ctx.d.setdefault(deadline_key, ctx.now + ctx.t.rollout_timeout)
    if ctx.now > deadline:
        raise Failure(f"{status.message} — still not done after {ctx.t.rollout_timeout:g}s (rollout timeout)")
    return Step.wait(ctx.t.poll_interval)


def _fill(ctx: Ctx, **extra: str) -> dict:
    return {"deployment": ctx.cfg.deployment, "namespace": ctx.ns, "sha": ctx.rec.sha, "env": ctx.rec.env,
            "color": "", "track": "stable", **extra}


def _verify(ctx: Ctx, key: str, fill: dict, *, final: bool | None = None, on_pass: str,
            on_fail: str) -> Step | None:
    state = ctx.d.setdefault("verify", {}).setdefault(key, {})
    outcome = verify_round(ctx.cfg, state, fill, now=ctx.now, final=final)
    if outcome.verdict == "pass":
        if not state.get("reported"):
            state["reported"] = True
            ctx.note(f"checks passed: {outcome.reason}")
        ctx.rec.phase = on_pass
        return None
    if outcome.verdict == "fail":
        ctx.d["failure"] = outcome.reason
        ctx.note(f"check failed: {outcome.reason}")
        ctx.rec.phase = on_fail
        return None
    if outcome.verdict == "inconclusive":
        if ctx.rec.promote_requested:
            ctx.rec.promote_requested = False
            ctx.note(f"promoted by hand despite inconclusive checks: {outcome.reason}")
            ctx.rec.phase = on_pass
            return None
        ctx.d["pause_resume"] = on_pass
        return Step.paused(f"checks inconclusive: {outcome.reason}. Reply `promote` to go on "
                           f"or `rollback` to undo")
    return Step.wait(ctx.cfg.verification.interval)


def _undo(ctx: Ctx, name: str, to_revision: int | None) -> tuple[int, str]:
    """Restore a previous revision's pod template (kubectl rollout undo). Idempotent: if the
    live template already is that revision's, nothing is sent."""
    dep = ctx.kube.get_deployment(ctx.ns, name)
    try:
        revision, template = undo_template(ctx.kube, dep, to_revision)
    except LookupError as e:
        raise Failure(str(e)) from None
    image = container_image(template, ctx.cfg.container) or "?"
    # compare templates, not revision numbers: the annotation lags until the controller
    # has observed the latest spec
    if _same_template(dep["spec"]["template"], template):
        return revision, image
    ctx.kube.patch_deployment(ctx.ns, name,
                              undo_patch(template, ctx.change_cause(f"rollback to revision {revision}")))
    return revision, image


def _same_template(a: dict, b: dict) -> bool:
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for t in (a, b):
        ((t.get("metadata") or {}).get("labels") or {}).pop("pod-template-hash", None)
    return a == b


# ------------------------------------------------------------------------------- rolling

def rolling_init(ctx: Ctx) -> Step | None:
    st: RollingStrategy = ctx.cfg.strategy  # type: ignore[assignment]
    dep = _get(ctx, ctx.cfg.deployment)
    if "previous_revision" not in ctx.d:
        # persist what to roll back to BEFORE changing anything: if this worker dies right after
        # the patch, a re-run would otherwise read our own new revision as "previous"
        ctx.d["previous_image"] = container_image(dep, ctx.cfg.container)
        ctx.d["previous_revision"] = revision_of(dep)
        ctx.d["mutated"] = True
        ctx.checkpoint()
    patch = _image_patch(ctx, ctx.rec.image, extra_spec={"strategy": {
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
    step = _await_rollout(ctx, ctx.cfg.deployment, "rollout_deadline")
    if step:
        return step
    dep = ctx.kube.get_deployment(ctx.ns, ctx.cfg.deployment)
    ctx.d["new_revision"] = revision_of(dep)
    ctx.note(f"rolled out: revision {revision_of(dep)} of {ctx.cfg.deployment} is live")
    ctx.rec.phase = "verify"
    return None


def rolling_verify(ctx: Ctx) -> Step | None:
    return _verify(ctx, "rolling", _fill(ctx), on_pass="done", on_fail="rollback")


def rolling_rollback(ctx: Ctx) -> Step | None:
    """Automatic or requested undo of this deploy: back to the revision we replaced."""
    target = ctx.d.get("previous_revision") if ctx.rec.kind == "deploy" else ctx.rec.revision
    name = ctx.cfg.deployment
    if ctx.rec.kind == "deploy" and not ctx.d.get("mutated"):
        ctx.rec.phase = "rolled_back"
        return None
    revision, image = _undo(ctx, name, target or None)
    if isinstance(ctx.cfg.strategy, CanaryStrategy):
        _scale_canary_to_zero(ctx)
        total = ctx.d.get("total")
        if total is not None:
            ctx.kube.scale_deployment(ctx.ns, name, total)
    ctx.d["restored"] = {"revision": revision, "image": image}
    ctx.note(f"rolling back {name} to revision {revision} ({image})")
    ctx.rec.phase = "rollback_wait"
    return Step.wait(ctx.t.poll_interval)


def rolling_rollback_wait(ctx: Ctx) -> Step | None:
    step = _await_rollout(ctx, ctx.cfg.deployment, "rollback_deadline")
    if step:
        return step
    restored = ctx.d.get("restored", {})
    ctx.note(f"rolled back: {ctx.cfg.deployment} runs {restored.get('image')} again")
    ctx.rec.phase = "rolled_back"
    return None


# ---------------------------------------------------------------------------- blue-green

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
    live_dep = _get(ctx, _colour_deployment(ctx, ctx.d["live"]))
    idle_name = _colour_deployment(ctx, ctx.d["idle"])
    _get(ctx, idle_name)
    replicas = max(1, live_dep["spec"].get("replicas") or 1)
    ctx.d.setdefault("previous_image", container_image(live_dep, ctx.cfg.container))
    ctx.d.setdefault("previous_revision", revision_of(live_dep))
    # The size the live colour serves at, before anything changes: a way back must find it
    # at least this big, whatever scaled it down meanwhile (an autoscaler once traffic left).
    ctx.d.setdefault("live_replicas", replicas)
    ctx.kube.patch_deployment(ctx.ns, idle_name, _image_patch(ctx, ctx.rec.image, replicas=replicas))
    ctx.d["mutated"] = True
    ctx.note(f"bringing up idle colour {ctx.d['idle']} ({idle_name}) with {ctx.rec.image}, "
             f"{replicas} replicas; "
             f"{ctx.d['live']} keeps serving {ctx.d['previous_image']}")
    ctx.rec.phase = "bg_rollout"
    return Step.wait(ctx.t.poll_interval)


def bg_rollout(ctx: Ctx) -> Step | None:
    step = _await_rollout(ctx, _colour_deployment(ctx, ctx.d["idle"]), "rollout_deadline")
    if step:
        return step
    ctx.note(f"idle colour {ctx.d['idle']} is ready; verifying it before any traffic moves")
    ctx.rec.phase = "bg_verify"
    return None


def bg_verify(ctx: Ctx) -> Step | None:
    next_phase = "bg_await_promote" if _bg(ctx).switch_traffic == "manual" else "bg_switch"
    return _verify(ctx, "idle", _fill(ctx, color=ctx.d["idle"]), on_pass=next_phase, on_fail="bg_abort")


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
    return _verify(ctx, "live", _fill(ctx, color=ctx.d["idle"]), on_pass="done", on_fail="bg_switch_back")


def bg_switch_back(ctx: Ctx) -> Step | None:
    """Traffic moved and something failed: flip back to the old colour, kept running for this."""
    old = ctx.d["live"]
    name = _colour_deployment(ctx, old)
    if _restore_capacity(ctx, name, ctx.d.get("live_replicas") or 1, old):
        return Step.wait(ctx.t.poll_interval)
    step = _await_rollout(ctx, name, "rollback_deadline")
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
    step = _await_rollout(ctx, name, "rollback_deadline")
    if step:
        return step
    _switch(ctx, target, require_image=None)
    image = container_image(ctx.kube.get_deployment(ctx.ns, name), ctx.cfg.container)
    ctx.d["restored"] = {"image": image, "color": target}
    ctx.note(f"traffic switched back to {target} ({image}); {ctx.d['live']} kept for a re-promote")
    ctx.rec.phase = "rolled_back"
    return None


# -------------------------------------------------------------------------------- canary

def _cn(ctx: Ctx) -> CanaryStrategy:
    return ctx.cfg.strategy  # type: ignore[return-value]


def _canary_name(ctx: Ctx) -> str:
    return _cn(ctx).canary_deployment.format(deployment=ctx.cfg.deployment)


def _scale_canary_to_zero(ctx: Ctx) -> None:
    try:
        ctx.kube.scale_deployment(ctx.ns, _canary_name(ctx), 0)
    except KubeNotFound:
        pass


def canary_init(ctx: Ctx) -> Step | None:
    st = _cn(ctx)
    stable = _get(ctx, ctx.cfg.deployment)
    ctx.d.setdefault("total", max(1, stable["spec"].get("replicas") or 1))
    ctx.d.setdefault("previous_image", container_image(stable, ctx.cfg.container))
    ctx.d.setdefault("previous_revision", revision_of(stable))
    name = _canary_name(ctx)
    try:
        ctx.kube.get_deployment(ctx.ns, name)
        ctx.kube.patch_deployment(ctx.ns, name, _image_patch(ctx, ctx.rec.image, replicas=0))
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
    ctx.kube.scale_deployment(ctx.ns, _canary_name(ctx), n)
    ctx.note(f"canary at {ctx.d['weight']}%: {n} canary pod(s) of {ctx.d['total']}")
    ctx.rec.phase = "canary_wait"
    return Step.wait(ctx.t.poll_interval)


def canary_wait(ctx: Ctx) -> Step | None:
    step = _await_rollout(ctx, _canary_name(ctx), "rollout_deadline")
    if step:
        return step
    # the traffic share is the replica ratio: shrink stable only once the canary pods are ready
    ctx.kube.scale_deployment(ctx.ns, ctx.cfg.deployment, max(0, ctx.d["total"] - _canary_replicas(ctx)))
    ctx.d["step_started"] = ctx.now
    ctx.rec.phase = "canary_analyze"
    return None


def canary_analyze(ctx: Ctx) -> Step | None:
    st = _cn(ctx)
    elapsed = ctx.now - ctx.d["step_started"]
    final = elapsed >= st.interval
    weight = ctx.d["weight"]
    next_weight = weight + st.step_weight
    on_pass = "canary_promote" if next_weight >= 100 else "canary_scale"
    step = _verify(ctx, f"weight-{weight}", _fill(ctx, track="canary", deployment=_canary_name(ctx)),
                   final=final, on_pass=on_pass, on_fail="canary_abort")
    if ctx.rec.phase == on_pass and on_pass == "canary_scale":
        ctx.d["weight"] = next_weight
    if step and step.kind == "wait":
        return Step.wait(min(ctx.cfg.verification.interval, max(0.0, st.interval - elapsed)))
    return step


def canary_promote(ctx: Ctx) -> Step | None:
    ctx.kube.patch_deployment(ctx.ns, ctx.cfg.deployment,
                              _image_patch(ctx, ctx.rec.image, replicas=ctx.d["total"]))
    ctx.d["promoted"] = True
    ctx.note(f"promoting: {ctx.cfg.deployment} gets {ctx.rec.image} at {ctx.d['total']} replicas")
    ctx.rec.phase = "canary_promote_wait"
    return Step.wait(ctx.t.poll_interval)


def canary_promote_wait(ctx: Ctx) -> Step | None:
    step = _await_rollout(ctx, ctx.cfg.deployment, "promote_deadline")
    if step:
        return step
    _scale_canary_to_zero(ctx)
    ctx.note(f"promoted: {ctx.cfg.deployment} runs {ctx.rec.image}; canary scaled to 0")
    ctx.rec.phase = "done"
    return None


def canary_abort(ctx: Ctx) -> Step | None:
    if ctx.d.get("promoted"):  # the stable Deployment already changed: undo it like rolling
        ctx.rec.phase = "rollback"
        return None
    _scale_canary_to_zero(ctx)
    if "total" in ctx.d:
        ctx.kube.scale_deployment(ctx.ns, ctx.cfg.deployment, ctx.d["total"])
    ctx.note(f"aborted canary: canary scaled to 0, {ctx.cfg.deployment} back to {ctx.d.get('total')} "
             f"replicas of {ctx.d.get('previous_image')}")
    ctx.rec.phase = "canary_abort_wait"
    return Step.wait(ctx.t.poll_interval)


def canary_abort_wait(ctx: Ctx) -> Step | None:
    step = _await_rollout(ctx, ctx.cfg.deployment, "rollback_deadline")
    if step:
        return step
    ctx.rec.phase = "rolled_back"
    return None


# -------------------------------------------------------------------------------- tables

PHASES: dict[str, dict[str, Handler]] = {
    "rolling": {"init": rolling_init, "rollout": rolling_rollout, "verify": rolling_verify,
                "rollback": rolling_rollback, "rollback_wait": rolling_rollback_wait},
    "blue_green": {"init": bg_init, "bg_rollout": bg_rollout, "bg_verify": bg_verify,
                   "bg_await_promote": bg_await_promote, "bg_switch": bg_switch,
                   "bg_post_verify": bg_post_verify, "bg_switch_back": bg_switch_back,
                   "bg_abort": bg_abort, "rollback": bg_abort, "bg_flip": bg_flip},
    "canary": {"init": canary_init, "canary_scale": canary_scale, "canary_wait": canary_wait,
               "canary_analyze": canary_analyze, "canary_promote": canary_promote,
               "canary_promote_wait": canary_promote_wait, "canary_abort": canary_abort,
               "canary_abort_wait": canary_abort_wait, "rollback": rolling_rollback,
               "rollback_wait": rolling_rollback_wait},
}

# where a deploy goes when it must be undone (a failure, or `rollback` mid-deploy)
ABORT_PHASE = {"rolling": "rollback", "blue_green": "bg_abort", "canary": "canary_abort"}
# the first phase of a manual rollback (the fast path: no analysis)
ROLLBACK_START = {"rolling": "rollback", "blue_green": "bg_flip", "canary": "rollback"}
# phases after which a failure means "undo"; before them nothing changed
UNDO_PHASES = {"rollback", "rollback_wait", "bg_abort", "bg_switch_back", "bg_flip",
               "canary_abort", "canary_abort_wait"}
