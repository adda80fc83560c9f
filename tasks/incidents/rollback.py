"""The automatic rollback an alert may ask for, and its follow-up.

Only where `environments.<env>.alerts.auto_rollback_on_alert` is true, only for a firing alert
matching the environment's selector at its minimum severity or above, and only when a deploy
went live there within `incidents.rollback_window` before the alert. The rollback goes through
the same gates (tasks/deploy/gates.py) and the same deployer and service as `/devops rollback`,
as the bot, once per incident (the request id is the incident and the deploy: submitting it
again starts nothing). Its reply in the deploy's thread is the deploy service's own verdict;
the incident is told by `follow`, which waits for the service's record to end and re-reads
what runs from the cluster before saying anything.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from tasks.config.matchers import matches_all, parse_matcher
from tasks.deploy.gates import evaluate
from tasks.deploy.model import DeployNotFound
from tasks.deploy.requests import DeployRequest
from tasks.deploy.store import DeployStore
from tasks.deploy.thread_status import in_progress
from tasks.deploy.verdicts import outcome
from tasks.engine.items import Outcome
from tasks.gitlab.comments import upsert_comment
from tasks.gitlab.replies import reply_body
from tasks.incidents import publish, render
from tasks.incidents.correlate import live_at
from tasks.incidents.escape import code
from tasks.incidents.store import Incident, IncidentStore
from tasks.platform import audit
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.incidents")

JOB = "devops_agent.incident_rollback"
POLL_SECONDS = 2.0
WATCH_SECONDS = 3 * 3600  # a rollback not finished by then is reported as still running


class DeployerPort(Protocol):
    def submit(self, request: DeployRequest) -> Any: ...
    def active(self, deploy_id: str) -> bool: ...
    def service(self) -> Any: ...


def candidate(incident: Incident, env_cfg: Any, cfg: Any) -> dict[str, Any] | None:
    """The earliest firing alert allowed to roll this environment back, or None."""
    policy = env_cfg.alerts
    if not policy.auto_rollback_on_alert:
        return None
    matchers = tuple(parse_matcher(m) for m in policy.selector)
    floor = cfg.rank(cfg.severity(policy.min_severity))
    fit = [a for a in incident.firing()
           if matches_all(matchers, a["labels"]) and cfg.rank(a["severity"]) >= floor]
    return min(fit, key=lambda a: (a["starts_at"], a["fingerprint"]), default=None)


def request(ctx: Any, incident: Incident, alert: dict[str, Any], now: float) -> dict[str, Any]:
    """Gate and submit the rollback as the bot; returns what the incident records about it."""
    config, gitlab = ctx.config, ctx.gitlab
    env = incident.target["env"]
    project = int(incident.target["project_id"])
    suspect = incident.suspect or {}
    ref = publish.incident_ref(incident)
    line = render.rollback_line(alert, env, ref)
    state: dict[str, Any] = {
        "env": env, "requested_at": now, "suspect": suspect.get("id"),
        "alert": {k: alert.get(k) for k in ("name", "fingerprint", "severity", "starts_at")}}
    access = config.env_access(env)
    bot = gitlab.current_user()
    state["by"] = bot.get("username")
    if access is None:
        return {**state, "status": "refused",
                "detail": f"`{env}` has no access rules (`access.{env}`), so nobody may roll it back"}
    decision = evaluate(gitlab, ctx.redis, access, project=project, env=env, ref=None,
                        user_id=int(bot.get("id") or 0), username=bot.get("username"),
                        force_reason=None, action="rollback", history=ctx.deployer,
                        env_config=config.environments.get(env), prefix=config.chatops.prefix)
    gates = [g.as_dict() for g in decision.gates]
    if not decision.allowed:
        refusing = decision.refusing()
        detail = (f"the **{refusing.name}** gate refused it: {refusing.detail}" if refusing
                  else "a gate refused it")
        audit.record(ctx.redis, project=project, where=f"incident:{ref}", user=bot.get("username"),
                     user_id=bot.get("id"), command=line, action="rollback", outcome="refused",
                     env=env, gates=gates)
        return {**state, "status": "refused", "detail": detail, "gates": gates}
    thread = suspect.get("thread")
    subject = f"incident-rollback:{incident.digest}"
    reply_to = (thread["kind"], thread["iid"], subject) if thread else None
    ticket = ctx.deployer.submit(DeployRequest(
        project=project, env=env, action="rollback", requested_by=bot.get("username"),
        reply_to=reply_to, command_line=line,
        request_id=f"incident:{incident.digest}:{suspect.get('id')}"))
    audit.record(ctx.redis, project=project, where=f"incident:{ref}", user=bot.get("username"),
                 user_id=bot.get("id"), command=line, action="rollback", outcome=ticket.status,
                 env=env, gates=gates, deploy_id=ticket.deploy_id, detail=ticket.detail)
    if ticket.status not in ("queued", "running"):
        return {**state, "status": "refused", "detail": ticket.detail, "gates": gates}
    if thread:
        def reply(text: str) -> None:
            upsert_comment(gitlab, Store(ctx.redis), thread["project"], thread["kind"],
                           thread["iid"], subject, reply_body(line, bot.get("username"), text))

        deployer = ctx.deployer
        in_progress(gitlab, ctx.redis, config, thread["project"], thread["kind"], thread["iid"],
                    env, f"rollback of `{env}` is {ticket.status}: {ticket.detail}", reply,
                    still_running=lambda: bool(ticket.deploy_id) and deployer.active(ticket.deploy_id))
    ctx.enqueue(JOB, {"digest": incident.digest},
                key=f"incident-rollback:{incident.digest}:{ticket.deploy_id}")
    return {**state, "status": "queued", "rollback_id": ticket.deploy_id, "detail": ticket.detail,
            "gates": gates}


def follow(ctx: Any, digest: str, now: float | None = None) -> Outcome:
    """Once the rollback's record has ended: re-read what runs, and tell the incident (issue,
    its comment, the deploy thread's comment, the post-mortem). Until then, look again soon."""
    now = time.time() if now is None else now
    store = IncidentStore(ctx.redis)
    incident = store.load(digest)
    rb = incident.rollback if incident else None
    if incident is None or rb is None or rb.get("status") not in ("queued", "running"):
        return Outcome("done", detail="nothing to follow")
    try:
        rec = DeployStore(ctx.redis).load(rb["rollback_id"])
    except DeployNotFound:
        rec = None
    if rec is not None and not rec.terminal and rec.status != "paused" \
            and now - float(rb.get("requested_at") or now) < WATCH_SECONDS:
        return Outcome(again=POLL_SECONDS)
    with store.lock(digest):
        incident = store.load(digest)
        if incident is None or incident.rollback is None:
            return Outcome("done", detail="incident gone")
        rb = incident.rollback
        env = rb["env"]
        if rec is None:
            rb.update(status="failed", detail="the rollback's record is gone; look at the cluster")
        elif not rec.terminal:
            rb.update(status="failed", detail=f"still {rec.status} ({rec.phase}) after "
                                              f"{WATCH_SECONDS // 3600} h; see {code(rec.id)}")
        else:
            result = outcome(rec, "rollback")
            live = ctx.deployer.service().status(env, project=str(rec.project)).live
            restored = (rec.data.get("restored") or {}).get("image") or \
                (rec.data.get("target") or {}).get("image")
            verified = result == "succeeded" and bool(restored) and live.get("image") == restored
            rb.update(status="succeeded" if result == "succeeded" else "failed",
                      detail=rec.reason, live_image=live.get("image") or live.get("error"),
                      verified=verified, finished_at=live_at(rec))
            incident.log(rec.created_at, f"automatic rollback {code(rec.id)} started as the bot")
            incident.log(live_at(rec), f"rollback {code(rec.id)} ended: {rec.status.replace('_', ' ')}")
            if verified:
                incident.log(now, f"verified from the cluster: `{env}` runs {code(restored)}")
        publish.ensure_postmortem(ctx.gitlab, incident)
        publish.write_issue(ctx.gitlab, incident, ctx.config.incidents)
        assert incident.project is not None and incident.iid is not None
        upsert_comment(ctx.gitlab, Store(ctx.redis), incident.project, "issue", incident.iid,
                       f"incident-rollback:{digest}",
                       "\n\n".join([*render.rollback_lines(incident),
                                    f"Post-mortem: #{incident.postmortem}"]))
        publish.thread_comment(ctx.gitlab, Store(ctx.redis), incident)
        store.save(incident)
    return Outcome("done", detail=f"rollback {rb.get('status')}")
