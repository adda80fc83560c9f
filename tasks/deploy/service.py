"""DeployService: deploys and rollbacks as a persisted state machine.

The engine drives it without ever sleeping in a worker (tasks/chatops/kube_deployer.py): each
deploy is an item whose work is one `advance`, due again after the step's wait:

    step = service.advance(deploy_id)   # Step.wait(seconds): run me again after `seconds`

Each `advance` loads the record from Redis, runs the current phase (a few API calls), saves the
record and returns, holding the deploy's step lock meanwhile. A worker that dies mid-step leaves
the record at its last saved phase and its step lock lapses; the next `advance` (any worker,
any process) re-runs that phase, and phases are written to be safe to re-run (strategies.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis as redis_lib

from tasks.adapters.kube import Kube, KubeError
from tasks.deploy import strategies
from tasks.deploy.config import BlueGreenStrategy, CanaryStrategy, Credentials, EnvironmentConfig
from tasks.deploy.model import (
    DeployError,
    DeployLocked,
    DeployNotFound,
    DeployRecord,
    DeployRequest,
    EnvStatus,
    NullReporter,
    Reporter,
    RollbackRequest,
    Step,
)
from tasks.deploy.rollout import container_image, replica_sets_by_revision, revision_of, rollout_status
from tasks.deploy.store import DeployStore

log = logging.getLogger(__name__)

MAX_PHASES_PER_ADVANCE = 8  # bounds one advance even if phases chain without waiting


def kube_for(cfg: EnvironmentConfig) -> Kube:
    """The default Kube factory: credentials as the environment configures them."""
    c: Credentials = cfg.credentials
    if c.mode == "in_cluster":
        return Kube.in_cluster(request_timeout=c.request_timeout)
    if c.mode == "kubeconfig":
        return Kube.from_kubeconfig(c.kubeconfig or "", context=c.context, request_timeout=c.request_timeout)
    token = None
    if c.token_file:
        with open(c.token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    return Kube.from_host(c.host or "", token=token, verify_ssl=c.verify_ssl, ca_cert=c.ca_file,
                          request_timeout=c.request_timeout)


class DeployService:
    def __init__(self, redis: redis_lib.Redis, environments: dict[str, EnvironmentConfig],
                 reporter: Reporter | None = None, *,
                 kube_factory: Callable[[EnvironmentConfig], Kube] = kube_for,
                 lock_ttl: float = 900.0, pause_ttl: float = 24 * 3600.0, step_mutex_ttl: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        """lock_ttl must exceed the longest wait between two advances (poll interval,
        verification interval, canary interval): every advance extends it. A paused deploy
        holds the lock for pause_ttl, waiting for `promote` or `rollback`. The step lock is
        renewed while held and lapses step_mutex_ttl after its holder died: give it the
        engine's lease (TASK_LEASE_SECONDS), so a step of a killed worker is not held up
        longer than the lease that re-sends it."""
        self.store = DeployStore(redis)
        self.environments = environments
        self.reporter: Reporter = reporter or NullReporter()
        self.kube_factory = kube_factory
        self.lock_ttl = lock_ttl
        self.pause_ttl = pause_ttl
        self.step_mutex_ttl = step_mutex_ttl
        self.clock = clock
        self._kubes: dict[str, Kube] = {}

    # ------------------------------------------------------------------ public API
    def start(self, request: DeployRequest) -> str:
        """Lock the environment and record a new deploy; returns its id. Raises DeployLocked."""
        cfg = self._env(request.env)
        image = request.image or cfg.image_for(request.sha, ref=request.ref)
        rec = DeployRecord(id=self._new_id(request.env), kind="deploy", project=str(request.project),
                           env=request.env, strategy=cfg.strategy.type, requested_by=request.requested_by,
                           sha=request.sha, ref=request.ref, image=image, handle=request.handle,
                           created_at=self.clock(), updated_at=self.clock())
        rec.log(f"deploy of {image} to {request.env} ({cfg.strategy.type}) requested by "
                f"{request.requested_by}", self.clock())
        self._claim(rec)
        self._report("progress", rec, rec.timeline[-1][1])
        return rec.id

    def rollback(self, request: RollbackRequest) -> str:
        """Roll the environment back (fast path, no analysis); returns the id to advance.

        If a deploy is running in that environment, it is asked to abort instead (its own
        rollback phase runs on its next advance), the request is added to its followers and
        its id is returned. Otherwise the target is checked first: a revision (or blue-green
        colour) that does not exist, or that runs an image whose deploy here failed its
        checks, is refused with what each revision runs (the latter unless `force`)."""
        cfg = self._env(request.env)
        if request.revision is not None and isinstance(cfg.strategy, BlueGreenStrategy):
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
        what = f"revision {request.revision}" if request.revision is not None else "the previous revision"
        rec = DeployRecord(id=self._new_id(request.env), kind="rollback", project=str(request.project),
                           env=request.env, strategy=cfg.strategy.type, requested_by=request.requested_by,
                           revision=request.revision, phase=strategies.ROLLBACK_START[cfg.strategy.type],
                           handle=request.handle, created_at=self.clock(), updated_at=self.clock())
        self._claim(rec)
        try:
            # checked under the environment lock: no deploy can change the revisions meanwhile
            target = self._rollback_target(cfg, rec, request)
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

    def _rollback_target(self, cfg: EnvironmentConfig, rec: DeployRecord,
                         request: RollbackRequest) -> dict:
        """What the rollback will restore, refused (DeployError) if it does not exist or failed
        its checks here (unless forced)."""
        bad = self.failed_images(rec.project, rec.env)
        suggestion = ""
        try:
            kube = self._kube(cfg)
            if isinstance(cfg.strategy, BlueGreenStrategy):
                st = cfg.strategy
                live = kube.get_service_selector(cfg.namespace, st.service).get(st.color_label)
                if live not in st.colors:
                    raise DeployError(f'service "{st.service}" selects no colour of {list(st.colors)}')
                other = st.colors[1] if live == st.colors[0] else st.colors[0]
                target: dict[str, Any] = {"color": other, "image": self._colour_image(kube, cfg, other)}
                listing = (f"Colours: {live} runs {self._colour_image(kube, cfg, live)} (live), "
                           f"{other} runs {target['image']}")
            else:
                dep = kube.get_deployment(cfg.namespace, cfg.deployment)
                revisions = self._revisions(kube, cfg, dep, bad)
                current = revision_of(dep)
                listing = "Revisions: " + ("; ".join(_describe(r) for r in revisions) or "none")
                older = [r["revision"] for r in revisions if r["revision"] < current]
                wanted = request.revision if request.revision is not None else max(older, default=None)
                found = next((r for r in revisions if r["revision"] == wanted), None)
                if wanted is None:
                    raise DeployError(f"{rec.env} has no revision before {current} to roll back to. "
                                      f"{listing}")
                if found is None:
                    raise DeployError(f"{rec.env} has no revision {wanted}. {listing}")
                if wanted == current:
                    raise DeployError(f"revision {wanted} is what {rec.env} runs now. {listing}")
                target = {"revision": wanted, "image": found["image"]}
                good = [r["revision"] for r in revisions if r["revision"] < current and not r.get("failed")]
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

    def failed_images(self, project: str, env: str) -> dict[str, DeployRecord]:
        """Images whose latest deploy to the environment failed its checks after changing the
        cluster (rolled back automatically, or its undo failed), with that deploy."""
        seen: dict[str, DeployRecord | None] = {}
        for rec in self.store.history(str(project), env):
            if rec.kind != "deploy" or not rec.image or rec.image in seen:
                continue
            failed = (rec.status in ("rolled_back", "failed") and not rec.abort_requested
                      and rec.data.get("mutated") and rec.data.get("failure"))
            if rec.status == "succeeded" or failed:
                seen[rec.image] = rec if failed else None
        return {image: rec for image, rec in seen.items() if rec is not None}

    def revisions(self, env: str, *, project: str = "") -> list[dict]:
        """The environment's rollout revisions, newest first: revision, image, live, and
        `failed` (deploy id and reason) when that image failed its checks here."""
        cfg = self._env(env)
        if isinstance(cfg.strategy, BlueGreenStrategy):
            return []
        kube = self._kube(cfg)
        dep = kube.get_deployment(cfg.namespace, cfg.deployment)
        return self._revisions(kube, cfg, dep, self.failed_images(project, env) if project else {})

    def _revisions(self, kube: Kube, cfg: EnvironmentConfig, dep: dict,
                   bad: dict[str, DeployRecord]) -> list[dict]:
        current = revision_of(dep)
        out = []
        for revision, rs in sorted(replica_sets_by_revision(kube, dep).items(), reverse=True):
            image = container_image(rs["spec"]["template"], cfg.container) or "?"
            row: dict = {"revision": revision, "image": image, "live": revision == current}
            if image in bad:
                row["failed"] = f"{bad[image].id}: {bad[image].data.get('failure') or bad[image].reason}"
            out.append(row)
        return out

    def _serving(self, kube: Kube, cfg: EnvironmentConfig, dep: dict) -> list[dict]:
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

    def _colour_image(self, kube: Kube, cfg: EnvironmentConfig, colour: str) -> str:
        st: BlueGreenStrategy = cfg.strategy  # type: ignore[assignment]
        dep = kube.get_deployment(cfg.namespace, st.deployment_pattern.format(deployment=cfg.deployment,
                                                                              color=colour))
        return container_image(dep, cfg.container) or "?"

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
                         live=self._live(cfg))

    def get(self, deploy_id: str) -> DeployRecord:
        return self.store.load(deploy_id)

    def advance(self, deploy_id: str) -> Step:
        """Run the deploy's next short step and persist it. Idempotent; safe after a crash."""
        rec = self.store.load(deploy_id)
        if rec.terminal:
            return rec.step()
        with self.store.step_lock(deploy_id, self.step_mutex_ttl) as held:
            if not held:
                # another worker is inside this deploy's step, or a rollback or promote is
                # writing its record: both are short, so look again soon
                return Step.wait(0.2)
            return self._advance_locked(deploy_id)

    def _advance_locked(self, deploy_id: str) -> Step:
        rec = self.store.load(deploy_id)  # re-read under the lock
        if rec.terminal:
            return rec.step()
        ttl = self.pause_ttl if rec.status == "paused" else self.lock_ttl
        kept = self.store.keep(rec.project, rec.env, rec.id, ttl)
        if not kept:
            holder = self.store.holder(rec.project, rec.env)
            return self._finish(rec, "failed", f"lost the {rec.env} lock to {holder} (this deploy was "
                                f"idle longer than the lock TTL); the cluster was left to it")
        if kept == 2 and (newer := self._finished_since(rec)):
            # our lock lapsed and another deploy ran meanwhile: going on would undo its work
            self.store.release(rec.project, rec.env, rec.id)
            return self._finish(rec, "failed", f"superseded by {newer}, which ran while this deploy "
                                f"was idle longer than the lock TTL; the cluster was left as it is")
        return self._run(rec)

    # ------------------------------------------------------------------ the engine
    def _run(self, rec: DeployRecord) -> Step:
        cfg = self._env(rec.env)
        if rec.abort_requested and rec.kind == "deploy" and rec.phase not in strategies.UNDO_PHASES \
                and rec.phase not in ("done", "rolled_back"):
            rec.phase = strategies.ABORT_PHASE[rec.strategy]
            rec.data.setdefault("failure", rec.abort_requested)
        if rec.status == "paused":
            if not (rec.promote_requested or rec.abort_requested):
                return rec.step()
            rec.status = "running"
        try:
            kube = self._kube(cfg)
        except KubeError as e:
            return self._finish(rec, "failed", f"cannot reach the cluster: {e}")
        step: Step | None = None
        for _ in range(MAX_PHASES_PER_ADVANCE):
            if rec.phase == "done":
                return self._finish(rec, "succeeded", self._success_text(rec, cfg))
            if rec.phase == "rolled_back":
                return self._finish(rec, "rolled_back", self._rolled_back_text(rec))
            ctx = strategies.Ctx(rec=rec, cfg=cfg, kube=kube, now=self.clock(),
                                 note=lambda t: self._note(rec, t), checkpoint=lambda: self.store.save(rec))
            handler = strategies.PHASES[rec.strategy].get(rec.phase)
            if handler is None:
                return self._finish(rec, "failed", f"unknown phase {rec.phase!r} for {rec.strategy}")
            try:
                step = handler(ctx)
                rec.api_errors = 0
            except strategies.Failure as e:
                step = self._on_failure(rec, str(e))
            except KubeError as e:
                if e.transient and rec.api_errors < cfg.timings.api_error_retries:
                    rec.api_errors += 1
                    self._note(rec, f"Kubernetes API error (attempt {rec.api_errors} of "
                                    f"{cfg.timings.api_error_retries}), retrying: {e}", report=False)
                    step = Step.wait(cfg.timings.poll_interval)
                else:
                    rec.api_errors = 0
                    step = self._on_failure(rec, f"Kubernetes API error: {e}")
            if step is not None:
                if step.terminal:
                    return self._finish(rec, step.kind, step.reason)
                newly_paused = False
                if step.kind == "paused":
                    if rec.status != "paused" or rec.reason != step.reason:
                        rec.log(f"paused: {step.reason}", self.clock())
                        newly_paused = True
                    rec.status, rec.reason = "paused", step.reason
                    # nobody advances a paused deploy until a human answers: hold the lock longer
                    self.store.keep(rec.project, rec.env, rec.id, self.pause_ttl)
                self._save(rec)
                if newly_paused:  # a human has to decide: that is a verdict, told once
                    self._report("verdict", rec, f"{rec.kind} {rec.id} paused: {step.reason}")
                return step
        self._save(rec)
        return Step.wait(0)

    def _on_failure(self, rec: DeployRecord, reason: str) -> Step | None:
        """Undo if we changed anything; fail if undoing itself failed or nothing changed."""
        if rec.phase in strategies.UNDO_PHASES or rec.kind == "rollback":
            what = "rollback" if rec.kind == "rollback" else "automatic rollback"
            self._note(rec, f"{what} failed: {reason}")
            return Step.failed(f"{what} failed: {reason} (first failure: {rec.data.get('failure', reason)})"
                               if rec.kind == "deploy" else f"{what} failed: {reason}")
        if not rec.data.get("mutated"):
            self._note(rec, f"failed before changing anything: {reason}")
            return Step.failed(reason)
        rec.data["failure"] = reason
        self._note(rec, f"failed: {reason}; rolling back automatically")
        rec.phase = strategies.ABORT_PHASE[rec.strategy]
        return None

    def _finish(self, rec: DeployRecord, status: str, reason: str) -> Step:
        rec.status, rec.reason = status, reason  # type: ignore[assignment]
        rec.log(f"{status.replace('_', ' ')}: {reason}", self.clock())
        self._save(rec)
        self.store.release(rec.project, rec.env, rec.id)
        self.store.finished(rec)
        self._report("verdict", rec, f"{rec.kind} {rec.id} {status.replace('_', ' ')}: {reason}")
        if status == "rolled_back" and rec.kind == "deploy" and not rec.abort_requested:
            self._report("postmortem", rec, *postmortem(rec))
        return rec.step()

    # ------------------------------------------------------------------ helpers
    def _env(self, env: str) -> EnvironmentConfig:
        try:
            return self.environments[env]
        except KeyError:
            raise DeployError(f"unknown environment {env!r} (configured: "
                              f"{', '.join(sorted(self.environments))})") from None

    def _kube(self, cfg: EnvironmentConfig) -> Kube:
        if cfg.name not in self._kubes:
            self._kubes[cfg.name] = self.kube_factory(cfg)
        return self._kubes[cfg.name]

    def _new_id(self, env: str) -> str:
        return f"{env}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"

    def _claim(self, rec: DeployRecord) -> None:
        # the record first, then the lock: a crash in between leaves a stray record, never a
        # lock that points at nothing
        self.store.save(rec)
        if not self.store.acquire(rec.project, rec.env, rec.id, self.lock_ttl):
            self.store.delete(rec.id)
            holder = self.store.holder(rec.project, rec.env) or "?"
            held = self.store.load(holder) if holder != "?" and self.store.exists(holder) else None
            raise DeployLocked(rec.env, holder, held)

    def _finished_since(self, rec: DeployRecord) -> str | None:
        last = self.store.last_id(rec.project, rec.env)
        if last and last != rec.id and self.store.exists(last):
            other = self.store.load(last)
            if other.updated_at > rec.updated_at:
                return other.id
        return None

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

    def _save(self, rec: DeployRecord) -> None:
        rec.updated_at = self.clock()
        self.store.save(rec)

    def _note(self, rec: DeployRecord, text: str, report: bool = True) -> None:
        rec.log(text, self.clock())
        if report:
            self._report("progress", rec, text)

    def _report(self, kind: str, rec: DeployRecord, *args: str) -> None:
        # a reporting hiccup (GitLab down) must never break or repeat a deploy step
        try:
            getattr(self.reporter, kind)(rec, *args)
        except Exception:
            log.exception("reporter.%s failed for %s", kind, rec.id)

    def _success_text(self, rec: DeployRecord, cfg: EnvironmentConfig) -> str:
        if rec.strategy == "blue_green":
            return (f"{rec.image} is live on {rec.data.get('idle')}; {rec.data.get('live')} kept with "
                    f"{rec.data.get('previous_image')} for instant rollback")
        if rec.strategy == "canary":
            return f"{rec.image} promoted to 100% of {cfg.deployment}"
        return f"{rec.image} rolled out to {cfg.deployment} (revision {rec.data.get('new_revision', '?')})"

    def _rolled_back_text(self, rec: DeployRecord) -> str:
        restored = rec.data.get("restored") or {}
        back_to = restored.get("image") or rec.data.get("previous_image") or "the previous version"
        if rec.kind == "rollback":
            where = (f" (revision {restored['revision']})" if restored.get("revision") else
                     f" on {restored['color']}" if restored.get("color") else "")
            return f"{rec.env} runs {back_to} again{where}"
        cause = rec.abort_requested or rec.data.get("failure", "")
        return f"{rec.image} rolled back, {rec.env} runs {back_to}: {cause}"

    def _live(self, cfg: EnvironmentConfig) -> dict:
        try:
            kube = self._kube(cfg)
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
                       rollout=rollout_status(dep).message, serving=self._serving(kube, cfg, dep))
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


def _describe(row: dict) -> str:
    """One revision for a person: `3 registry/app:v1 (live)`."""
    extra = " (current)" if row.get("live") else ""
    if row.get("failed"):
        extra += f" (failed its checks in deploy {row['failed'].split(':', 1)[0]})"
    return f"{row['revision']} `{row['image']}`{extra}"


def postmortem(rec: DeployRecord) -> tuple[str, str]:
    """(title, body) of the post-mortem after an automatic rollback."""
    def ts(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")

    title = f"Post-mortem: {rec.env} deploy of {rec.image} rolled back automatically"
    lines = [
        f"## {title}",
        "",
        f"- **Deploy:** `{rec.id}` ({rec.strategy}), requested by {rec.requested_by}"
        + (f" from `{rec.ref}`" if rec.ref else "") + (f" at `{rec.sha[:12]}`" if rec.sha else ""),
        f"- **What was deployed:** `{rec.image}`",
        f"- **What ran before:** `{rec.data.get('previous_image', '?')}`"
        + (f" (revision {rec.data['previous_revision']})" if rec.data.get("previous_revision") else ""),
        f"- **What failed:** {rec.data.get('failure', rec.reason)}",
        f"- **Rolled back at:** {ts(rec.timeline[-1][0]) if rec.timeline else '?'} UTC",
        "",
        "### Timeline (UTC)",
        "",
        *[f"- {ts(t)} {text}" for t, text in rec.timeline],
        "",
        *reflection_section(),
    ]
    return title, "\n".join(lines)


# What every post-mortem asks the team, after a deploy's automatic rollback and after an
# alert's (tasks/incidents): one list, so both ask the same.
REFLECTION_QUESTIONS = ("What went wrong?", "How do we prevent it?")


def reflection_section() -> list[str]:
    """The post-mortem's questions, each a heading with room for the team's answer."""
    lines: list[str] = []
    for question in REFLECTION_QUESTIONS:
        if lines:
            lines.append("")
        lines += [f"### {question}", "", "_To be filled in by the team._"]
    return lines
