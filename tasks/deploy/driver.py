"""ChatOps → the Kubernetes deploy service, stepped by the engine, reported to GitLab.

A deploy is a persisted state machine (tasks/deploy/service.py). Instead of sleeping in a worker
between steps, each deploy is an engine item `s:<deploy id>` (tasks/engine/schedule.py) due when its
next step is; a worker killed mid-step is followed by another once its lease lapses (every step
is idempotent, and the deploy's step lock lapses with the lease).

Every command owns one reply. Its context (where the reply is, who asked, the label that
triggered it) is kept under the request's handle, written before the service is called, and the
deploy record names the handles waiting on it: the request that started it, and any rollback or
promote that joined it later. Each is told its own verdict (tasks/deploy/verdicts.py).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

import orjson

from tasks.config.agent import AgentConfig
from tasks.deploy import keys
from tasks.deploy.model import DeployError, DeployNotFound
from tasks.deploy.ports import DeployGitLab
from tasks.deploy.requests import DeployRequest, Ticket
from tasks.deploy.revisions import describe
from tasks.deploy.service import DeployService
from tasks.deploy.store import DeployStore
from tasks.deploy.thread_status import conclude, progress
from tasks.deploy.verdicts import aborted_by, detail, outcome, verdict
from tasks.engine.items import Outcome, run_item
from tasks.gitlab.comments import upsert_comment
from tasks.gitlab.replies import reply_body
from tasks.platform import metrics
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.deploy")

_DELETE_IF_STARTING = ("if redis.call('GET', KEYS[1]) == 'starting' then "
                       "return redis.call('DEL', KEYS[1]) end return 0")
CONTEXT_TTL = 30 * 86400
GITLAB_DEPLOYMENT_STATUS = {"succeeded": "success", "rolled_back": "failed", "failed": "failed",
                            "aborted": "canceled"}


def _context_key(handle: str) -> str:
    return keys.context(handle)


def deploy_context(redis: Any, handle: str) -> dict[str, Any] | None:
    """What a deploy's request recorded about itself (project, the thread it came from, who
    asked), for whoever later needs to tell that thread something (tasks/incidents)."""
    raw = redis.get(_context_key(handle)) if handle else None
    return orjson.loads(raw) if raw else None


def _postmortem_key(deploy_id: str) -> str:
    return keys.postmortem(deploy_id)


class GitLabReporter:
    """The deploy service's Reporter: edits each waiting command's reply, moves its labels,
    records GitLab deployments and files post-mortems."""

    def __init__(self, gitlab: DeployGitLab | None, redis: Any, config: AgentConfig) -> None:
        self.gitlab, self.redis, self.config = gitlab, redis, config

    def _ctx(self, handle: str) -> dict[str, Any] | None:
        raw = self.redis.get(_context_key(handle)) if handle else None
        return orjson.loads(raw) if raw else None

    def parties(self, deploy: Any) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(action, context, follower entry) of every request the record carries out: the one
        that started it (records from before handles existed kept it under their id), then
        those that joined it."""
        out: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        own = self._ctx(deploy.handle or deploy.id)
        if own is not None:
            out.append((deploy.kind, own, {}))
        for follower in deploy.followers:
            ctx = self._ctx(follower.get("handle", ""))
            if ctx is not None:
                out.append((follower.get("action", ""), ctx, follower))
        return out

    def _reply(self, ctx: dict[str, Any], text: str) -> None:
        if self.gitlab is None:  # no GitLab configured: the request came from no thread
            return
        kind, iid, subject = ctx["reply_to"]
        upsert_comment(self.gitlab, Store(self.redis), ctx["project"], kind, iid, subject,
                       reply_body(ctx.get("line"), ctx.get("requested_by"), text))

    def _running(self, deploy_id: str) -> bool:
        store = DeployStore(self.redis)
        return store.exists(deploy_id) and not store.load(deploy_id).terminal

    def progress(self, deploy: Any, text: str) -> None:
        for action, ctx, _ in self.parties(deploy):
            if not ctx.get("reply_to"):
                continue
            kind, iid, _subject = ctx["reply_to"]
            lead = f"{action} of `{deploy.env}` running: "
            if action != deploy.kind:  # a rollback or promote carried out by this deploy
                lead += f"deploy `{deploy.id}`: "
            self._each(progress, self.redis, ctx["project"], kind, iid, deploy.env, lead + text,
                       lambda t, c=ctx: self._reply(c, t),
                       still_running=lambda: self._running(deploy.id))

    def verdict(self, deploy: Any, text: str) -> None:
        for action, ctx, _ in self.parties(deploy):
            if action == "deploy" and deploy.kind == "deploy":
                self._each(self._record_deployment, ctx, outcome(deploy, action))
            self._each(self.tell, deploy, action, ctx)

    def tell(self, deploy: Any, action: str, ctx: dict[str, Any]) -> None:
        """One request's verdict, from the record that carried it out."""
        result = outcome(deploy, action)
        if result is None or not ctx.get("reply_to"):
            return
        done = verdict(action, result)
        words = detail(deploy, action)
        if result == "paused":
            prefix = self.config.chatops.prefix
            words += (f". Answer `{prefix} promote {deploy.env}` to go on or "
                      f"`{prefix} rollback {deploy.env}` to undo it")
        postmortem = self.redis.get(_postmortem_key(deploy.id))
        if postmortem and action == deploy.kind:
            words += f". Post-mortem: #{postmortem.decode()}"
        kind, iid, _ = ctx["reply_to"]
        conclude(self.gitlab, self.redis, self.config, ctx["project"], kind, iid, deploy.env, done,
                 done.text(deploy.env, words, by=aborted_by(deploy)), lambda t: self._reply(ctx, t))

    def _each(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        # One request's reply failing (its note deleted, GitLab hiccuping) must not keep the
        # others from being told.
        try:
            fn(*args, **kwargs)
        except Exception:
            log.warning("could not report on a deploy to one of its requests", exc_info=True)

    def _record_deployment(self, ctx: dict[str, Any], result: str) -> None:
        status = GITLAB_DEPLOYMENT_STATUS.get(result)
        if ctx.get("gitlab_deployment") and status and self.gitlab is not None:
            self.gitlab.update_deployment(ctx["project"], ctx["gitlab_deployment"], status)

    def postmortem(self, deploy: Any, title: str, body: str) -> None:
        if self.gitlab is None:
            log.warning("deploy %s was rolled back automatically; with no GitLab configured its "
                        "post-mortem is not filed", deploy.id)
            return
        ctx = self._ctx(deploy.handle or deploy.id) or {}
        project = ctx.get("project") or deploy.project
        store = DeployStore(self.redis)
        if not store.claim_postmortem(deploy.id):
            return
        try:
            issue = self.gitlab.create_issue(project, title, body, ["devops-agent:postmortem"])
        except Exception:
            store.unclaim_postmortem(deploy.id)
            raise
        self.redis.set(_postmortem_key(deploy.id), str(issue.get("iid")), ex=CONTEXT_TTL)
        if ctx.get("reply_to"):  # the verdict again, now with the post-mortem's number
            self.tell(deploy, deploy.kind, ctx)


class KubeDeployer:
    """ChatOps' Deployer over the Kubernetes deploy service."""

    def __init__(self, *, redis: Any, schedule: Any, config: AgentConfig,
                 gitlab: DeployGitLab | None = None,
                 dry_run: bool = False, lease_seconds: float = 30.0) -> None:
        # Everything it uses is handed in by the composition root (tasks/wiring): `gitlab` is
        # None where no GitLab is configured (the requests then have no reply thread).
        self.redis, self.schedule, self.config, self.gitlab = redis, schedule, config, gitlab
        self.dry_run, self.lease_seconds = dry_run, lease_seconds
        self._service: Any = None

    def service(self) -> Any:
        """One per process: its Kubernetes clients (connection pools) serve every step."""
        if self._service is None:
            reporter = GitLabReporter(self.gitlab, self.redis, self.config)
            # The step lock lapses with the engine's lease: a step of a killed worker runs
            # again as soon as the engine re-sends it (README, Deploys: recovery).
            self._service = DeployService(self.redis, self.config.environments, reporter,
                                          step_mutex_ttl=self.lease_seconds)
        return self._service

    # -- what the gates ask: which SHAs this environment ran and verified -----------------------
    def _history(self, project: int, env: str, limit: int = 50) -> list[Any]:
        return DeployStore(self.redis).history(str(project), env, limit)

    def succeeded_shas(self, project: int, env: str, limit: int = 50) -> list[str]:
        """SHAs deployed to `env` whose deploy passed its checks, newest first."""
        return [r.sha for r in self._history(project, env, limit)
                if r.kind == "deploy" and r.status == "succeeded" and r.sha]

    def last_succeeded(self, project: int, env: str) -> dict[str, Any] | None:
        for r in self._history(project, env):
            if r.kind == "deploy" and r.status == "succeeded":
                return {"sha": r.sha, "image": r.image, "id": r.id}
        return None

    def active(self, deploy_id: str) -> bool:
        """Whether the deploy (or rollback) still runs or waits for a human."""
        store = DeployStore(self.redis)
        return store.exists(deploy_id) and not store.load(deploy_id).terminal

    def submit(self, request: DeployRequest) -> Ticket:
        if request.env not in self.config.environments:
            return Ticket("refused", f"no target configured for `{request.env}`: nothing was deployed")
        if self.dry_run:
            return Ticket("refused", f"DRY_RUN is set: the {request.action} of `{request.env}` "
                                     f"({(request.sha or '')[:8] or 'no SHA'}) was not sent to the cluster")
        seen_key = keys.request(request.request_id)
        # Claim the request before starting it: two workers with the same command both read
        # "not seen" otherwise, and the second would start (or be refused) a second deploy.
        if not self.redis.set(seen_key, "starting", nx=True, ex=CONTEXT_TTL):
            seen = self.redis.get(seen_key) or b"starting"
            return Ticket("queued", "already submitted", seen.decode())
        try:
            return self._start(request, seen_key)
        except BaseException:
            # Not started (the claim still says so): a retry may try again. Once started, the
            # claim names the deploy, and a retry reports that one instead of starting another.
            self.redis.eval(_DELETE_IF_STARTING, 1, seen_key)
            raise

    def _start(self, request: DeployRequest, seen_key: str) -> Ticket:
        svc = self.service()
        handle = request.request_id or f"request:{uuid.uuid4().hex}"
        context = {"project": request.project, "reply_to": request.reply_to,
                   "requested_by": request.requested_by, "trigger_label": request.trigger_label,
                   "line": request.command_line, "action": request.action, "gitlab_deployment": None}
        # The context exists before any record names its handle: a worker stepping the deploy
        # in another process can report to it from the first step on.
        self.redis.set(_context_key(handle), orjson.dumps(context), ex=CONTEXT_TTL)
        # The same request goes on to the service, now naming whom to tell.
        request = replace(request, handle=handle)
        try:
            if request.action == "deploy":
                deploy_id = svc.start(request)
            elif request.action == "rollback":
                deploy_id = svc.rollback(request)
            else:
                deploy_id = svc.promote(request.env, project=str(request.project),
                                        by=request.requested_by or "", handle=handle)
        except (DeployError, ValueError) as exc:
            self.redis.delete(seen_key, _context_key(handle))
            return Ticket("refused", str(exc))
        self.redis.set(seen_key, deploy_id, ex=CONTEXT_TTL)
        rec = svc.get(deploy_id)
        if (self.config.gitlab_deployments and self.gitlab is not None and request.action == "deploy"
                and request.sha):
            made = self.gitlab.create_deployment(
                request.project, request.env, request.sha, request.ref or "", status="running")
            context["gitlab_deployment"] = made.get("id")
            self.redis.set(_context_key(handle), orjson.dumps(context), ex=CONTEXT_TTL)
        self.schedule.add(step_member(deploy_id), send_now=True)
        if rec.kind == "deploy" and request.action == "rollback":
            said = (f"deploy `{deploy_id}` of {rec.image} by @{rec.requested_by} was asked to "
                      "abort; undoing it is this rollback")
        elif request.action == "promote":
            said = f"deploy `{deploy_id}` of {rec.image} by @{rec.requested_by} was told to go on"
        else:
            target = rec.data.get("target") or {}
            to = (f" to revision {target['revision']} ({target['image']})" if target.get("revision")
                  else f" to {target['color']} ({target['image']})" if target.get("color") else "")
            said = f"{request.action} `{deploy_id}`{to} started"
            if target.get("failed"):
                said += f", forced: {target['failed']}"
        return Ticket("queued", said, deploy_id)

    def status(self, project: int, env: str) -> dict[str, Any]:
        """What runs in `env` (read from the cluster), the deploy in progress, its revisions."""
        svc = self.service()
        st = svc.status(env, project=str(project))
        out: dict[str, Any] = {"env": env, "locked_by": st.locked_by, "live": st.live,
                               "active": _summary(st.active), "last": _summary(st.last)}
        try:
            out["revisions"] = [describe(r) for r in svc.revisions(env, project=str(project))]
        except Exception as exc:  # noqa: BLE001 - status only reads; it answers whatever it can
            out["revisions"] = []
            out["revisions_error"] = str(exc)
        return out


def _summary(rec: Any) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {"id": rec.id, "kind": rec.kind, "status": rec.status, "phase": rec.phase,
            "requested_by": rec.requested_by, "image": rec.image, "revision": rec.revision,
            "target": rec.data.get("target"), "reason": rec.reason, "updated_at": rec.updated_at}


def step_member(deploy_id: str) -> str:
    return "s:" + deploy_id


def advance_once(deployer: KubeDeployer, deploy_id: str) -> Outcome:
    """One short step of a deploy, as the engine's work: run again after the step's wait, or
    finished (the deploy's own record says how)."""
    try:
        step = deployer.service().advance(deploy_id)
    except DeployNotFound:
        # The record expired or was removed: nothing is left to step.
        log.warning("deploy %s has no record any more; dropping its schedule", deploy_id)
        return Outcome("done", detail="missing")
    if step.kind == "wait":
        return Outcome(again=max(0.05, step.seconds))
    # Paused deploys leave the schedule too: `promote` or `rollback` schedules them again.
    return Outcome("done", detail=step.kind)


def advance_deploy(rt: Any, deploy_id: str) -> str:
    """The engine's `s:<deploy id>` item: every step under a lease, so a worker killed mid-step
    is followed by another within the lease's lifetime, and never two steps at once."""
    deployer = rt.adapter("deployer")
    if not isinstance(deployer, KubeDeployer):
        log.warning("a deploy step without Kubernetes environments configured")
        rt.schedule.finish(step_member(deploy_id), "invalid", ttl=CONTEXT_TTL,
                           error="no Kubernetes environments are configured")
        return "skipped"
    return run_item(rt.schedule, step_member(deploy_id),
                    lambda state, attempt: advance_once(deployer, deploy_id), ttl=CONTEXT_TTL,
                    on_finish=lambda status, state: metrics.ITEMS_FINISHED.labels(
                        kind="deploy_step", status=status).inc(),
                    on_error=lambda error_kind: rt.metrics_error("deploy_step", error_kind))
