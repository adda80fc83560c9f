"""ChatOps → the Kubernetes deploy service, stepped by short Celery tasks, reported to GitLab.

A deploy is a persisted state machine (tasks/deploy/service.py). Instead of sleeping in a worker
between steps, each deploy sits in a Redis sorted set `da:deploys:due` scored by when its next
step is due; the worker's reaper loop sends `advance_deploy` for due ones and pushes their due
time forward, so a worker killed mid-step is simply followed by another `advance` a little later
(every step is idempotent). Progress, the verdict and any post-mortem go to the command's reply.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from tasks.celery_app import app
from tasks.chatops.deployer import DeployRequest, Ticket
from tasks.comments import upsert_comment
from tasks.config import AgentConfig
from tasks.store import Store

log = logging.getLogger("devops_agent.deploy")

DUE = "da:deploys:due"
_DELETE_IF_STARTING = ("if redis.call('GET', KEYS[1]) == 'starting' then "
                       "return redis.call('DEL', KEYS[1]) end return 0")
STEP_LEASE_SECONDS = 90  # a claimed step that did not report back is re-sent after this
CONTEXT_TTL = 30 * 86400


def _context_key(deploy_id: str) -> str:
    return f"da:deploy-ctx:{deploy_id}"


class GitLabReporter:
    """The deploy service's Reporter: edits the command's reply, flips labels, files post-mortems."""

    def __init__(self, gitlab: Any, redis: Any, config: AgentConfig) -> None:
        self.gitlab, self.redis, self.config = gitlab, redis, config

    def _ctx(self, deploy: Any) -> dict[str, Any] | None:
        raw = self.redis.get(_context_key(deploy.id))
        return orjson.loads(raw) if raw else None

    def _reply(self, ctx: dict[str, Any], text: str) -> None:
        from tasks.chatops.core import reply_body

        kind, iid, subject = ctx["reply_to"]
        upsert_comment(self.gitlab, Store(self.redis), ctx["project"], kind, iid, subject,
                       reply_body(ctx.get("line"), ctx.get("requested_by"), text))

    def progress(self, deploy: Any, text: str) -> None:
        ctx = self._ctx(deploy)
        if ctx and ctx.get("reply_to"):
            self._reply(ctx, f"🚀 {deploy.kind} of `{deploy.env}` running: {text}")

    def verdict(self, deploy: Any, text: str) -> None:
        from tasks.chatops.core import finish

        ctx = self._ctx(deploy)
        if not ctx:
            return
        status = "succeeded" if deploy.status == "succeeded" else (
            "paused" if deploy.status == "paused" else "failed")
        if not ctx.get("reply_to"):
            self._record_deployment(ctx, status)
            return
        if status == "paused":
            self._reply(ctx, f"⏸ {deploy.kind} of `{deploy.env}` is waiting: {text}. Answer "
                             f"`{self.config.chatops.prefix} promote {deploy.env}` or "
                             f"`{self.config.chatops.prefix} rollback {deploy.env}`.")
            return
        kind, iid, _ = ctx["reply_to"]
        self._record_deployment(ctx, status)
        finish(self.gitlab, self.config, ctx["project"], kind, iid, deploy.env, deploy.kind,
               Ticket(status, text, deploy.id), reply=lambda t: self._reply(ctx, t))

    def _record_deployment(self, ctx: dict[str, Any], status: str) -> None:
        if ctx.get("gitlab_deployment") and status in ("succeeded", "failed"):
            self.gitlab.update_deployment(ctx["project"], ctx["gitlab_deployment"],
                                          "success" if status == "succeeded" else "failed")

    def postmortem(self, deploy: Any, title: str, body: str) -> None:
        ctx = self._ctx(deploy) or {}
        project = ctx.get("project") or deploy.project
        store = Store(self.redis)
        if not store.once(f"postmortem:{deploy.id}"):
            return
        try:
            issue = self.gitlab.create_issue(project, title, body, ["devops-agent:postmortem"])
        except Exception:
            store.forget(f"postmortem:{deploy.id}")
            raise
        if ctx.get("reply_to"):
            self._reply(ctx, f"❌ {deploy.kind} of `{deploy.env}` was rolled back automatically; "
                             f"post-mortem: #{issue.get('iid')}")


class KubeDeployer:
    """ChatOps' Deployer over the Kubernetes deploy service."""

    def __init__(self, rt: Any, config: AgentConfig) -> None:
        self.rt, self.config, self.redis = rt, config, rt.redis

    def service(self) -> Any:
        from tasks.deploy.service import DeployService

        reporter = GitLabReporter(self.rt.adapter("gitlab"), self.redis, self.config)
        return DeployService(self.redis, self.config.environments, reporter)

    # -- what the gates ask: which SHAs this environment ran and verified -----------------------
    def _history(self, project: int, env: str, limit: int = 50) -> list[Any]:
        from tasks.deploy.store import DeployStore

        store = DeployStore(self.redis)
        ids = [i.decode() for i in self.redis.lrange(f"deploy-history:{project}:{env}", 0, limit - 1)]
        out = []
        for deploy_id in ids:
            if store.exists(deploy_id):
                out.append(store.load(deploy_id))
        return out

    def succeeded_shas(self, project: int, env: str, limit: int = 50) -> list[str]:
        """SHAs deployed to `env` whose deploy passed its checks, newest first."""
        return [r.sha for r in self._history(project, env, limit)
                if r.kind == "deploy" and r.status == "succeeded" and r.sha]

    def last_succeeded(self, project: int, env: str) -> dict[str, Any] | None:
        for r in self._history(project, env):
            if r.kind == "deploy" and r.status == "succeeded":
                return {"sha": r.sha, "image": r.image, "id": r.id}
        return None

    def submit(self, request: DeployRequest) -> Ticket:
        from tasks.deploy.model import DeployError, DeployRequest as KubeDeploy, RollbackRequest

        if request.env not in self.config.environments:
            return Ticket("refused", f"no target configured for `{request.env}`: nothing was deployed")
        if self.rt.settings.dry_run:
            return Ticket("refused", f"DRY_RUN is set: the {request.action} of `{request.env}` "
                                     f"({(request.sha or '')[:8] or 'no SHA'}) was not sent to the cluster")
        seen_key = f"da:deploy-by-request:{request.request_id}"
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
        from tasks.deploy.model import DeployError, DeployRequest as KubeDeploy, RollbackRequest

        svc = self.service()
        try:
            if request.action == "deploy":
                deploy_id = svc.start(KubeDeploy(project=str(request.project), env=request.env,
                                                 sha=request.sha or "", ref=request.ref or "",
                                                 requested_by=request.requested_by or ""))
            elif request.action == "rollback":
                revision = int(request.revision) if request.revision else None
                deploy_id = svc.rollback(RollbackRequest(
                    project=str(request.project), env=request.env,
                    requested_by=request.requested_by or "", revision=revision,
                    reason=request.reason or ""))
            else:
                deploy_id = svc.promote(request.env, project=str(request.project))
        except (DeployError, ValueError) as exc:
            self.redis.delete(seen_key)
            return Ticket("refused", str(exc))
        self.redis.set(seen_key, deploy_id, ex=CONTEXT_TTL)
        gitlab_deployment = None
        if self.config.gitlab_deployments and request.action == "deploy" and request.sha:
            made = self.rt.adapter("gitlab").create_deployment(
                request.project, request.env, request.sha, request.ref or "", status="running")
            gitlab_deployment = made.get("id")
        self.redis.set(_context_key(deploy_id), orjson.dumps({
            "project": request.project, "reply_to": request.reply_to,
            "requested_by": request.requested_by, "trigger_label": request.trigger_label,
            "line": request.command_line, "gitlab_deployment": gitlab_deployment}), ex=CONTEXT_TTL)
        schedule(self.redis, deploy_id, time.time())
        return Ticket("queued", f"{request.action} `{deploy_id}` started", deploy_id)

    def status(self, project: int, env: str) -> dict[str, Any]:
        st = self.service().status(env, project=str(project))
        return {"env": env, "locked_by": st.locked_by, "live": st.live,
                "last": st.last.status if st.last else None}


def schedule(redis: Any, deploy_id: str, at: float) -> None:
    redis.zadd(DUE, {deploy_id: at})


def send_due(redis: Any, now: float | None = None, limit: int = 50) -> list[str]:
    """Called by the worker's reaper loop: send `advance_deploy` for every due deploy."""
    now = now or time.time()
    due = [d.decode() for d in redis.zrangebyscore(DUE, "-inf", now, start=0, num=limit)]
    sent = []
    for deploy_id in due:
        # claim: only the caller that moves the due time forward sends the step
        if redis.zadd(DUE, {deploy_id: now + STEP_LEASE_SECONDS}, xx=True, ch=True, gt=True):
            app.send_task("devops_agent.advance_deploy", args=[deploy_id])
            sent.append(deploy_id)
    return sent


def advance_once(deployer: KubeDeployer, deploy_id: str) -> str:
    """One short step of a deploy; re-schedules it (or not) from what the step says."""
    from tasks.deploy.model import DeployNotFound

    try:
        step = deployer.service().advance(deploy_id)
    except DeployNotFound:
        # The record expired or was removed: nothing is left to step, so stop scheduling it.
        log.warning("deploy %s has no record any more; dropping its schedule", deploy_id)
        deployer.redis.zrem(DUE, deploy_id)
        return "missing"
    if step.kind == "wait":
        schedule(deployer.redis, deploy_id, time.time() + max(0.05, step.seconds))
    else:
        deployer.redis.zrem(DUE, deploy_id)
    return step.kind


@app.task(name="devops_agent.advance_deploy", acks_late=True, reject_on_worker_lost=True,
          ignore_result=True)
def advance_deploy(deploy_id: str) -> str:
    from tasks.runtime import runtime

    deployer = runtime().adapter("deployer")
    if not isinstance(deployer, KubeDeployer):
        log.warning("advance_deploy without Kubernetes environments configured")
        return "skipped"
    return advance_once(deployer, deploy_id)
