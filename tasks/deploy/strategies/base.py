"""What every strategy's phases share: the context a phase runs in, `Failure`, and the writes
and waits the strategies have in common (image patches, rollout waits, verification rounds,
`kubectl rollout undo`).

A phase handler reads the world, makes at most a few API calls, updates `ctx.rec` (phase and
scratch data) and returns a Step, or None to run the next phase in the same `advance`. Every
handler must be safe to run twice: a worker may die after its API call and before the record
is saved, and the next worker re-runs the same phase. So writes are absolute ("image = X",
"replicas = N", "selector = green"), never relative, and a handler first checks whether its
effect is already there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from tasks.config.environments import CanaryStrategy, EnvironmentConfig
from tasks.deploy.checks import verify_round
from tasks.deploy.kube import Kube, KubeNotFound
from tasks.deploy.model import DeployRecord, Step
from tasks.deploy.rollout import (
    container_image,
    container_names,
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


def image_patch(ctx: Ctx, image: str, replicas: int | None = None, extra_spec: dict | None = None) -> dict:
    spec: dict = {"template": {"spec": {"containers": [{"name": ctx.cfg.container, "image": image}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    spec.update(extra_spec or {})
    return {"metadata": {"annotations": {"kubernetes.io/change-cause": ctx.change_cause(image)}},
            "spec": spec}


def get_checked(ctx: Ctx, name: str) -> dict:
    dep = ctx.kube.get_deployment(ctx.ns, name)
    if ctx.cfg.container not in container_names(dep):
        raise Failure(f'deployment "{name}" has no container "{ctx.cfg.container}" '
                      f"(it has: {', '.join(container_names(dep))})")
    return dep


def await_rollout(ctx: Ctx, name: str, deadline_key: str) -> Step | None:
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


def fill_for(ctx: Ctx, **extra: str) -> dict:
    return {"deployment": ctx.cfg.deployment, "namespace": ctx.ns, "sha": ctx.rec.sha, "env": ctx.rec.env,
            "color": "", "track": "stable", **extra}


def verify(ctx: Ctx, key: str, fill: dict, *, final: bool | None = None, on_pass: str,
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


def undo(ctx: Ctx, name: str, to_revision: int | None) -> tuple[int, str]:
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
    if same_template(dep["spec"]["template"], template):
        return revision, image
    ctx.kube.patch_deployment(ctx.ns, name,
                              undo_patch(template, ctx.change_cause(f"rollback to revision {revision}")))
    return revision, image


def same_template(a: dict, b: dict) -> bool:
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for t in (a, b):
        ((t.get("metadata") or {}).get("labels") or {}).pop("pod-template-hash", None)
    return a == b


def canary_strategy(ctx: Ctx) -> CanaryStrategy:
    return ctx.cfg.strategy  # type: ignore[return-value]


def canary_name(ctx: Ctx) -> str:
    return canary_strategy(ctx).canary_deployment.format(deployment=ctx.cfg.deployment)


def scale_canary_to_zero(ctx: Ctx) -> None:
    """Rolling's undo of a canary environment uses this too (after a promote went wrong)."""
    try:
        ctx.kube.scale_deployment(ctx.ns, canary_name(ctx), 0)
    except KubeNotFound:
        pass
