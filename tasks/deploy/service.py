"""DeployService: deploys and rollbacks as a persisted state machine, and what is asked of them.

`start` records and locks a deploy, `rollback` a rollback (or asks the running deploy to undo
itself), `promote` lets a paused deploy go on, `status` says what holds an environment and what
runs there. Each record is then stepped by `advance` (tasks/deploy/stepper.py, the class this one
builds on), one short step at a time, from the engine (tasks/deploy/driver.py). Rollback targets
and revision listings are read by tasks/deploy/revisions.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace

from tasks.config.environments import BlueGreenStrategy
from tasks.deploy import revisions, strategies
from tasks.deploy.model import (
    DeployError,
    DeployLocked,
    DeployNotFound,
    DeployRecord,
    EnvironmentLocked,
    EnvStatus,
)
from tasks.deploy.requests import DeployRequest
from tasks.deploy.stepper import DeployStepper


class DeployService(DeployStepper):
    """What is asked of deploys: start, roll back, promote, and what an environment runs. The
    stepping itself (`advance`) is DeployStepper's (tasks/deploy/stepper.py)."""

    # ------------------------------------------------------------------ public API
    def start(self, request: DeployRequest) -> str:
        """Lock the environment and record a new deploy; returns its id. Raises DeployLocked
        (another deploy holds it) or EnvironmentLocked (someone else locked it by hand)."""
        request = _normalized(request)
        cfg = self._env(request.env)
        self._check_manual_lock(request)
        image = request.image or cfg.image_for(request.sha or "", ref=request.ref or "")
        rec = DeployRecord(id=self._new_id(request.env), kind="deploy", project=str(request.project),
                           env=request.env, strategy=cfg.strategy.type,
                           requested_by=request.requested_by or "", sha=request.sha or "",
                           ref=request.ref or "", image=image, handle=request.handle,
                           created_at=self.clock(), updated_at=self.clock())
        rec.log(f"deploy of {image} to {request.env} ({cfg.strategy.type}) requested by "
                f"{request.requested_by}", self.clock())
        self._claim(rec)
        self._report("progress", rec, rec.timeline[-1][1])
        return rec.id

    def rollback(self, request: DeployRequest) -> str:
        """Roll the environment back (fast path, no analysis); returns the id to advance.

        If a deploy is running in that environment, it is asked to abort instead (its own
        rollback phase runs on its next advance), the request is added to its followers and
        its id is returned. Otherwise the target is checked first: a revision (or blue-green
        colour) that does not exist, or that runs an image whose deploy here failed its
        checks, is refused with what each revision runs (the latter unless `force`)."""
        request = _normalized(request)
        cfg = self._env(request.env)
        self._check_manual_lock(request)
        revision = _revision(request)
        if revision is not None and isinstance(cfg.strategy, BlueGreenStrategy):
            raise DeployError("blue-green rollback flips traffic to the other colour; "
                              "a named revision is not supported there")
        holder = self.store.holder(str(request.project), request.env)
        if holder and self.store.exists(holder):
            with self._holding(holder):  # an `advance` saving meanwhile would drop the abort
                active = self.store.load(holder)
                if active.kind == "deploy" and not active.terminal:
                    if not active.abort_requested:
                        active.abort_requested = f"rollback requested by {request.requested_by}" + (
                            f": {request.reason}" if request.reason else "")
                        active.log(active.abort_requested, self.clock())
                    if not any(f.get("handle") == request.handle and f.get("action") == "rollback"
                               for f in active.followers if request.handle):
                        active.followers.append({"action": "rollback", "by": request.requested_by,
                                                 "handle": request.handle, "reason": request.reason,
                                                 "at": self.clock()})
                    self.store.save(active)
                    aborted = active
                else:
                    aborted = None
            if aborted is not None:
                self._report("progress", aborted, aborted.abort_requested)
                return aborted.id
        what = f"revision {revision}" if revision is not None else "the previous revision"
        rec = DeployRecord(id=self._new_id(request.env), kind="rollback", project=str(request.project),
                           env=request.env, strategy=cfg.strategy.type,
                           requested_by=request.requested_by or "", revision=revision,
                           phase=strategies.ROLLBACK_START[cfg.strategy.type],
                           handle=request.handle, created_at=self.clock(), updated_at=self.clock())
        self._claim(rec)
        try:
            # checked under the environment lock: no deploy can change the revisions meanwhile
            target = revisions.rollback_target(lambda: self._kube(cfg), cfg, rec, request,
                                               self.failed_images(rec.project, rec.env))
        except BaseException:
            self.store.release(rec.project, rec.env, rec.id)
            self.store.delete(rec.id)
            raise
        rec.data["target"] = target
        if target.get("revision"):
            rec.revision = target["revision"]  # exactly the revision that was checked
            what = f"revision {target['revision']} ({target['image']})"
        elif target.get("color"):
            what = f"{target['color']} ({target['image']})"
        rec.log(f"rollback of {request.env} to {what} requested by {request.requested_by}"
                + (f": {request.reason}" if request.reason else "")
                + (" (forced past its failed checks)" if target.get("failed") else ""), self.clock())
        self.store.save(rec)
        self._report("progress", rec, rec.timeline[-1][1])
        return rec.id

    def failed_images(self, project: str, env: str) -> dict[str, DeployRecord]:
        """Images whose latest deploy here failed its checks (tasks/deploy/revisions.py)."""
        return revisions.failed_images(self.store, project, env)

    def revisions(self, env: str, *, project: str = "") -> list[dict]:
        """The environment's rollout revisions, newest first: revision, image, live, and
        `failed` (deploy id and reason) when that image failed its checks here."""
        cfg = self._env(env)
        if isinstance(cfg.strategy, BlueGreenStrategy):
            return []
        kube = self._kube(cfg)
        dep = kube.get_deployment(cfg.namespace, cfg.deployment)
        return revisions.revisions(kube, cfg, dep, self.failed_images(project, env) if project else {})

    def promote(self, target: str, *, project: str | None = None, by: str = "",
                handle: str = "") -> str:
        """Let a paused deploy go on (manual traffic switch, inconclusive checks) or, for a
        canary, skip the remaining steps. `target` is a deploy id or an environment name.
        Anything else has nothing to promote and is refused. The request joins the deploy's
        followers, to be told how the deploy ends."""
        found = self._resolve(target, project)
        with self._holding(found.id):  # never interleaved with an `advance` of the same deploy
            rec = self.store.load(found.id)
            if rec.terminal:
                raise DeployError(f"{rec.id} already finished ({rec.status})")
            running_canary = rec.strategy == "canary" and rec.phase in (
                "canary_scale", "canary_wait", "canary_analyze")
            if rec.kind != "deploy" or rec.abort_requested or not (rec.status == "paused" or running_canary):
                what = ("is a rollback" if rec.kind != "deploy" else "is being aborted for a rollback"
                        if rec.abort_requested else f"is not waiting for a promote (phase {rec.phase})")
                raise DeployError(f"{rec.kind} `{rec.id}` {what}: nothing to promote")
            rec.promote_requested = True
            if running_canary:
                rec.phase = "canary_promote"  # promote now: skip the remaining weights
            if by or handle:
                rec.followers.append({"action": "promote", "by": by, "handle": handle, "at": self.clock()})
            rec.log(f"promote requested{f' by {by}' if by else ''} (phase {rec.phase})", self.clock())
            self.store.save(rec)
        return rec.id

    @contextlib.contextmanager
    def _holding(self, deploy_id: str, wait: float = 30.0) -> Iterator[None]:
        """The deploy's step mutex, waited for: a step is a few API calls, so a request to
        abort or promote queues behind it instead of racing its save."""
        deadline = time.monotonic() + wait
        while True:
            with self.store.step_lock(deploy_id, self.step_mutex_ttl) as held:
                if held:
                    yield
                    return
            if time.monotonic() > deadline:
                raise DeployError(f"{deploy_id} is busy with a step; try again in a minute")
            time.sleep(0.05)

    def status(self, env: str, *, project: str | None = None) -> EnvStatus:
        """Lock holder, active and last deploy, and what runs now (one or two API reads)."""
        cfg = self._env(env)
        if project is None:
            holders = self.store.holders_for_env(env)
            project = next(iter(holders)) if len(holders) == 1 else ""
        holder = self.store.holder(project, env) if project else None
        active = self.store.load(holder) if holder and self.store.exists(holder) else None
        last_id = self.store.last_id(project, env) if project else None
        last = self.store.load(last_id) if last_id and self.store.exists(last_id) else None
        return EnvStatus(project=project, env=env, locked_by=holder, active=active, last=last,
                         live=revisions.live(lambda: self._kube(cfg), cfg),
                         holds=self.store.holds(project, env) if project else [])

    def get(self, deploy_id: str) -> DeployRecord:
        return self.store.load(deploy_id)

    def _check_manual_lock(self, request: DeployRequest) -> None:
        # The gates refuse a locked environment before anything is submitted; this catches a
        # lock taken between the gates and the claim. The holder's own requests pass (an
        # auto-deploy's `requested_by` is "<username> (auto-deploy)"), and so does --force.
        manual = self.store.manual_lock(str(request.project), request.env)
        if manual is None or request.force:
            return
        if manual[1].by != (request.requested_by or "").split(" (", 1)[0]:
            raise EnvironmentLocked(request.env, manual[1])

    def _claim(self, rec: DeployRecord) -> None:
        # the record first, then the lock: a crash in between leaves a stray record, never a
        # lock that points at nothing
        self.store.save(rec)
        if not self.store.acquire(rec.project, rec.env, rec.id, self.lock_ttl):
            self.store.delete(rec.id)
            holder = self.store.holder(rec.project, rec.env) or "?"
            held = self.store.load(holder) if holder != "?" and self.store.exists(holder) else None
            raise DeployLocked(rec.env, holder, held)

    def _resolve(self, target: str, project: str | None) -> DeployRecord:
        if self.store.exists(target):
            return self.store.load(target)
        if target in self.environments:
            holders = ({project: self.store.holder(project, target)} if project
                       else self.store.holders_for_env(target))
            ids = [h for h in holders.values() if h]
            if len(ids) == 1:
                return self.store.load(ids[0])
            if not ids:
                raise DeployNotFound(f"nothing is deploying to {target}")
            raise DeployError(f"several projects are deploying to {target}; name the deploy id")
        raise DeployNotFound(f"no deploy or environment {target!r}")


def _normalized(request: DeployRequest) -> DeployRequest:
    """The request with its optional words as the record keeps them ("" for none)."""
    return replace(request, project=str(request.project), sha=request.sha or "",
                   ref=request.ref or "", requested_by=request.requested_by or "",
                   reason=request.reason or "")


def _revision(request: DeployRequest) -> int | None:
    """A rollback's named revision; text that is no number is refused (ValueError)."""
    return int(request.revision) if request.revision else None
