"""ChatOps → the Kubernetes deploy service, stepped by the engine, reported to GitLab.

A deploy is a persisted state machine (tasks/deploy/service.py). Instead of sleeping in a worker
between steps, each deploy is an engine item `s:<deploy id>` (tasks/schedule.py) due when its
next step is; a worker killed mid-step is followed by another once its lease lapses (every step
is idempotent). Progress, the verdict and any post-mortem go to the command's reply.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from tasks.chatops.deployer import DeployRequest, Ticket
from tasks.comments import upsert_comment
from tasks.config import AgentConfig
from tasks.items import Outcome, run_item
from tasks.store import Store

log = logging.getLogger("devops_agent.deploy")

_DELETE_IF_STARTING = ("if redis.call('GET', KEYS[1]) == 'starting' then "
                       "return redis.call('DEL', KEYS[1]) end return 0")
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
        self.rt.schedule.add(step_member(deploy_id), send_now=True)
        return Ticket("queued", f"{request.action} `{deploy_id}` started", deploy_id)

    def status(self, project: int, env: str) -> dict[str, Any]:
        st = self.service().status(env, project=str(project))
        return {"env": env, "locked_by": st.locked_by, "live": st.live,
                "last": st.last.status if st.last else None}


def step_member(deploy_id: str) -> str:
    return "s:" + deploy_id


def advance_once(deployer: KubeDeployer, deploy_id: str) -> Outcome:
    """One short step of a deploy, as the engine's work: run again after the step's wait, or
    finished (the deploy's own record says how)."""
    from tasks.deploy.model import DeployNotFound

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
    from tasks import metrics

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
