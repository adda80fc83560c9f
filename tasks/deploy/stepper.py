"""The deploy engine: one short step of a record at a time, persisted after each.

The engine drives it without ever sleeping in a worker (tasks/deploy/driver.py): each
deploy is an item whose work is one `advance`, due again after the step's wait:

    step = service.advance(deploy_id)   # Step.wait(seconds): run me again after `seconds`

Each `advance` loads the record from Redis, runs the current phase (a few API calls), saves the
record and returns, holding the deploy's step lock meanwhile. A worker that dies mid-step leaves
the record at its last saved phase and its step lock lapses; the next `advance` (any worker,
any process) re-runs that phase, and phases are written to be safe to re-run
(tasks/deploy/strategies/). What starts, joins or lets a record go on is the service's
(tasks/deploy/service.py), built on this class.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import redis as redis_lib

from tasks.config.environments import Credentials, EnvironmentConfig
from tasks.deploy import report, strategies
from tasks.deploy.kube import Kube, KubeError
from tasks.deploy.model import DeployError, DeployRecord, NullReporter, Reporter, Step
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


class DeployStepper:
    """Steps records: `advance` and what it needs (the store, clients, reporter, clock)."""

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
                return self._finish(rec, "succeeded", report.success_text(rec, cfg))
            if rec.phase == "rolled_back":
                return self._finish(rec, "rolled_back", report.rolled_back_text(rec))
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
            self._report("postmortem", rec, *report.postmortem(rec))
        return rec.step()

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

    def _finished_since(self, rec: DeployRecord) -> str | None:
        last = self.store.last_id(rec.project, rec.env)
        if last and last != rec.id and self.store.exists(last):
            other = self.store.load(last)
            if other.updated_at > rec.updated_at:
                return other.id
        return None

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
