"""The `incidents` handler: one Alertmanager notification → its incident issue (found or
created, edited in place), the suspected deploy and its thread's comment, and the automatic
rollback where the environment allows it. `process` is the plain function; `handle` is the
registered shell."""

from __future__ import annotations

import time
from typing import Any

from tasks.deploy.driver import deploy_context
from tasks.deploy.store import DeployStore
from tasks.gitlab.client import NotFound
from tasks.gitlab.facts import project_allowed
from tasks.incidents import correlate, publish, rollback
from tasks.incidents.escape import code
from tasks.incidents.mapping import group_target, highest
from tasks.incidents.store import Incident, IncidentStore, merge
from tasks.incidents.store import digest as digest_of
from tasks.platform.handlers import HelpRecord, handler
from tasks.platform.store import Store

HELP = HelpRecord(
    description="Turns Prometheus Alertmanager notifications (POST /webhooks/alertmanager) into "
                "one incident issue per alert group, edited as alerts fire and resolve; names "
                "the deploy that went live just before and comments in its thread; rolls it "
                "back automatically where the environment allows it, and files a post-mortem.",
    config="incidents: and environments.<env>.alerts in DEVOPS_AGENT_CONFIG; "
           "ALERTMANAGER_TOKEN / ALERTMANAGER_BASIC_AUTH",
)


def _project(ctx: Any, ref: str | None) -> tuple[int | None, str | None, str]:
    """(id, path, note) of a project named by config or an alert label, read from GitLab and
    checked against GITLAB_PROJECTS: an alert naming a project is only a hint."""
    if not ref:
        return None, None, "no project named"
    try:
        raw = ctx.gitlab.get_project(int(ref) if str(ref).isdigit() else ref)
    except NotFound:
        return None, None, f"project {ref} does not exist or the bot cannot see it"
    pid, path = int(raw["id"]), str(raw.get("path_with_namespace") or "")
    if not project_allowed(ctx.settings, pid, path):
        return None, path, f"project {path} is not in GITLAB_PROJECTS"
    return pid, path, ""


def _target(ctx: Any, incident: Incident, event: Any) -> None:
    cfg = ctx.config
    t = group_target(event.alerts, event.common_labels, cfg.incidents, cfg.environments)
    pid, path, note = _project(ctx, t.project) if t.env else (None, None, "")
    incident.target = {"env": t.env, "how": t.how, "project": t.project, "project_id": pid,
                       "project_path": path, "project_note": note}


def _suspect(ctx: Any, incident: Incident) -> None:
    env, pid = incident.target.get("env"), incident.target.get("project_id")
    started = incident.first_start()
    if not env or pid is None or started is None:
        return
    rec = correlate.suspect(DeployStore(ctx.redis).history(str(pid), env), started,
                            ctx.config.incidents.rollback_seconds)
    if rec is None:
        return
    context = deploy_context(ctx.redis, rec.handle or rec.id)
    path = None
    if context and context.get("project") is not None:
        try:
            path = ctx.gitlab.get_project(context["project"]).get("path_with_namespace")
        except NotFound:
            context = None  # the thread's project is gone: nowhere to comment
    incident.suspect = correlate.describe(rec, started, context, path)
    incident.log(rec.created_at, f"deploy {code(rec.id)} of {code(rec.image)} requested by "
                                 f"@{rec.requested_by}")
    incident.log(correlate.live_at(rec), f"deploy {code(rec.id)} live")


def process(ctx: Any, event: Any, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    cfg = ctx.config.incidents
    if not cfg.enabled:
        return ctx.decide("ignored", reason="incidents.project is not configured")
    if ctx.gitlab is None:
        return ctx.decide("ignored", reason="GITLAB_URL/GITLAB_TOKEN not configured")
    store = IncidentStore(ctx.redis)
    d = digest_of(event.group_key)
    with store.lock(d):
        incident = store.load(d)
        refired = incident is not None and incident.resolved_at is not None and any(
            a.status == "firing" and a.starts_at.timestamp() > incident.resolved_at
            for a in event.alerts)
        previous = None
        if incident is not None and refired and now - (incident.resolved_at or now) > cfg.reopen_seconds:
            # A new episode: a new issue, its own deploy, its own rollback.
            previous, incident = incident.iid, None
        if incident is None:
            incident = Incident(d, event.group_key, project=cfg.project)
            if previous:
                incident.meta["previous_iid"] = previous
        changed = merge(incident, event.alerts, cfg)
        incident.meta.update(receiver=event.receiver, external_url=event.external_url,
                             truncated=event.truncated_alerts)
        firing = incident.firing()
        incident.meta["severity"] = highest([a["severity"] for a in
                                             (firing or list(incident.alerts.values()))], cfg)
        was = incident.status
        incident.status = "firing" if firing else "resolved"
        if incident.status == "firing":
            if not incident.opened_at or incident.resolved_at is not None:
                incident.opened_at = min(a["starts_at"] for a in firing)
            if incident.resolved_at is not None:
                incident.log(now, "fired again")
            incident.resolved_at = None
        elif was == "firing" or incident.resolved_at is None:
            ends = [a["ends_at"] for a in incident.alerts.values() if a["ends_at"]]
            incident.resolved_at = max(ends) if ends else now
            incident.opened_at = incident.opened_at or (incident.first_start() or now)
            incident.log(incident.resolved_at, "all alerts resolved")
        if not incident.target:
            _target(ctx, incident, event)
        if incident.suspect is None and incident.status == "firing":
            _suspect(ctx, incident)
        if "project_path" not in incident.meta:
            try:
                incident.meta["project_path"] = ctx.gitlab.get_project(cfg.project).get(
                    "path_with_namespace")
            except NotFound:
                return ctx.decide("failed", reason=f"incidents.project {cfg.project} does not "
                                                   "exist or the bot cannot see it")
        created = publish.ensure_issue(ctx.gitlab, incident, cfg, now)
        store.save(incident)  # the issue is known before anything else is written
        rb_state = None
        if incident.status == "firing" and incident.rollback is None and incident.suspect:
            env_cfg = ctx.config.environments.get(incident.target["env"])
            alert = rollback.candidate(incident, env_cfg, cfg) if env_cfg else None
            if alert is not None:
                incident.rollback = rb_state = rollback.request(ctx, incident, alert, now)
                incident.log(now, f"automatic rollback requested for alert {code(alert['name'])}: "
                                  f"{rb_state['status']}")
                store.save(incident)
        written = publish.write_issue(ctx.gitlab, incident, cfg)
        commented = publish.thread_comment(ctx.gitlab, Store(ctx.redis), incident)
        if incident.postmortem:
            publish.ensure_postmortem(ctx.gitlab, incident)
        store.save(incident)
    return ctx.decide("incident", issue=incident.iid, created=created, status=incident.status,
                      alerts_changed=changed, edited=written, env=incident.target.get("env"),
                      suspect=(incident.suspect or {}).get("id"), thread_comment=commented,
                      rollback=(rb_state or {}).get("status"))


@handler("incidents", kinds=("alert",), help=HELP)
def handle(event, ctx):
    return process(ctx, event)
