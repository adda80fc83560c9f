"""What people read: the incident issue, the comment in the deploy's thread, the rollback's
report and the post-mortem. Everything an alert says is text from outside: it is escaped
(HTML, Markdown, GitLab references and quick actions) and cut to a bounded length."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasks.deploy.report import reflection_section
from tasks.gitlab.comments import marker
from tasks.incidents.escape import code, link, text
from tasks.incidents.store import Incident


def when(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "—"


def title(incident: Incident) -> str:
    names = sorted({a["name"] for a in incident.alerts.values()})
    env = incident.target.get("env")
    what = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    # Titles are plain text in GitLab (no Markdown), so only length and line breaks matter.
    return " ".join(f"Incident: {what or 'alert'}{f' on {env}' if env else ''}".split())[:250]


def issue_marker(d: str) -> str:
    return marker(f"incident:{d}")


def thread_ref(thread: dict[str, Any] | None) -> str:
    if not thread:
        return "an unknown thread"
    sigil = "#" if thread["kind"] == "issue" else "!"
    return f"{thread.get('path') or 'project ' + str(thread.get('project'))}{sigil}{thread['iid']}"


def suspect_lines(incident: Incident, window_minutes: int) -> list[str]:
    s = incident.suspect
    env = incident.target.get("env")
    if not env:
        return [f"No environment is known for these alerts ({text(incident.target.get('how'))}), "
                "so no deploy was looked for."]
    if not incident.target.get("project_id"):
        return [f"Environment `{env}`; no project is known for it "
                f"({text(incident.target.get('project_note') or 'none named')}), so no deploy "
                "was looked for."]
    if s is None:
        return [f"No deploy of `{env}` in the {window_minutes} min before the alert started."]
    return [f"Deploy {code(s['id'])} of {code(s['image'])}"
            + (f" (`{s['sha'][:12]}`" + (f" from {code(s['ref'])})" if s.get('ref') else ")")
               if s.get("sha") else "")
            + f" by @{text(s['requested_by'], 60)}, live {s['minutes_before']} min before the "
            f"alert started, requested from {thread_ref(s.get('thread'))}."]


def rollback_lines(incident: Incident) -> list[str]:
    rb = incident.rollback
    if rb is None:
        return []
    alert = rb.get("alert") or {}
    why = f"alert {code(alert.get('name'))} ({text(alert.get('severity'), 20)})"
    status = rb.get("status")
    if status == "refused":
        return [f"🚫 Automatic rollback for {why} was not started: {text(rb.get('detail'), 500)}"]
    if status in ("queued", "running"):
        return [f"⏳ Automatic rollback {code(rb.get('rollback_id'))} of `{rb.get('env')}` "
                f"requested for {why}; waiting for the deploy service to finish it."]
    if status == "succeeded":
        verified = (f" Verified: `{rb.get('env')}` runs {code(rb.get('live_image'))}."
                    if rb.get("verified") else
                    f" Not verified: the cluster reports {code(rb.get('live_image'))}.")
        return [f"✅ Automatic rollback {code(rb.get('rollback_id'))} for {why} done: "
                f"{text(rb.get('detail'), 500)}.{verified}"]
    return [f"❌ Automatic rollback {code(rb.get('rollback_id'))} for {why} did not complete: "
            f"{text(rb.get('detail'), 500)}"]


def issue_body(incident: Incident, shown: int, window_minutes: int) -> str:
    firing = incident.firing()
    alerts = sorted(incident.alerts.values(),
                    key=lambda a: (a["status"] != "firing", -(a["starts_at"] or 0), a["fingerprint"]))
    state = "🔥 firing" if incident.status == "firing" else "✅ resolved"
    meta = incident.meta
    env, project = incident.target.get("env"), incident.target.get("project_path")
    lines = [
        issue_marker(incident.digest),
        f"## {state}: {len(firing)} of {len(alerts)} alert(s) firing",
        "",
        f"- **Severity:** {text(incident.meta.get('severity', 'unknown'), 20)}",
        "- **Environment:** " + (f"`{env}`" if env else "unknown")
        + (f" (project {text(project, 200)})" if project else ""),
        f"- **Started:** {when(incident.opened_at)} UTC"
        + (f" · **Resolved:** {when(incident.resolved_at)} UTC" if incident.resolved_at else ""),
        f"- **Alert group:** {code(incident.group_key, 200)} (receiver {code(meta.get('receiver'), 60)})"
        + (f" · {link(meta.get('external_url'), 'Alertmanager')}" if meta.get("external_url") else ""),
        "",
        "### Suspected deploy",
        "",
        *suspect_lines(incident, window_minutes),
    ]
    rb = rollback_lines(incident)
    if rb:
        lines += ["", "### Automatic rollback", "", *rb]
    if incident.postmortem:
        lines += ["", f"Post-mortem: #{incident.postmortem}"]
    lines += ["", "### Alerts", "",
              "| Status | Alert | Severity | Started (UTC) | Ended (UTC) | Summary | Description | Source |",
              "|---|---|---|---|---|---|---|---|"]
    for a in alerts[:shown]:
        status = "🔥 firing" if a["status"] == "firing" else "✅ resolved"
        source = link(a.get("url"), "graph") or "—"
        summary = text(a["summary"]) if a["summary"] else "—"
        description = text(a["description"]) if a["description"] else "—"
        lines.append(f"| {status} | {text(a['name'], 100)} | {text(a['severity'], 20)} | "
                     f"{when(a['starts_at'])} | {when(a['ends_at']) if a['status'] == 'resolved' else '—'} | "
                     f"{summary} | {description} | {source} |")
    hidden = len(alerts) - min(shown, len(alerts))
    if hidden:
        lines.append(f"\n_{hidden} more alert(s) not shown._")
    if meta.get("truncated"):
        lines.append(f"\n_Alertmanager left out {int(meta['truncated'])} alert(s) of this group "
                     "(`max_alerts` on its receiver)._")
    lines += ["", "### Timeline (UTC)", "",
              *[f"- {when(t)} {entry}" for t, entry in incident.timeline[-50:]]]
    return "\n".join(lines)


def thread_comment(incident: Incident, incident_ref: str) -> str:
    """The one comment in the suspected deploy's thread."""
    s = incident.suspect or {}
    first = incident.first_start()
    names = ", ".join(sorted({code(a["name"], 60) for a in incident.alerts.values()})[:3])
    lines = [f"🚨 Incident {incident_ref}: {names} started firing on `{s.get('env')}` at "
             f"{when(first)} UTC, {s.get('minutes_before', '?')} min after deploy {code(s.get('id'))} "
             f"of {code(s.get('image'))} from this thread."]
    rb = incident.rollback
    if rb and rb.get("status") in ("queued", "running"):
        lines.append("devops-agent is rolling it back automatically; the rollback's own reply "
                     "here says how it ends.")
    elif rb:
        lines += rollback_lines(incident)
    if incident.postmortem:
        lines.append(f"Post-mortem: {incident.project}#{incident.postmortem}")
    if incident.status == "resolved":
        lines.append(f"✅ The alerts resolved at {when(incident.resolved_at)} UTC.")
    return "\n\n".join(lines)


def rollback_line(alert: dict[str, Any], env: str, incident_ref: str) -> str:
    """The 'command' the bot's rollback reply quotes: which alert triggered it."""
    return (f"automatic rollback of {env}: alert {alert.get('name')} "
            f"({alert.get('severity')}) firing since {when(alert.get('starts_at'))} UTC, "
            f"incident {incident_ref}")


def postmortem(incident: Incident, incident_ref: str) -> tuple[str, str]:
    s, rb = incident.suspect or {}, incident.rollback or {}
    env = incident.target.get("env")
    t = f"Post-mortem: {env} rolled back after an alert ({title(incident).removeprefix('Incident: ')})"
    timeline: list[list[Any]] = [[s["created_at"], f"deploy {code(s.get('id'))} of "
                                  f"{code(s.get('image'))} requested by @{text(s.get('requested_by'), 60)}"],
                                 [s["live_at"], "deploy live (its checks passed)"]] if s else []
    timeline += [list(e) for e in incident.timeline]
    lines = [marker(f"incident-postmortem:{incident.digest}"), f"## {t[:250]}", "",
             f"- **Incident:** {incident_ref}",
             f"- **Deploy:** {code(s.get('id'))} of {code(s.get('image'))} by "
             f"@{text(s.get('requested_by'), 60)}, from {thread_ref(s.get('thread'))}",
             f"- **Triggering alert:** {code((rb.get('alert') or {}).get('name'))}",
             f"- **Rollback:** {code(rb.get('rollback_id'))}: {text(rb.get('status'), 20)}"
             + (f", verified: `{env}` runs {code(rb.get('live_image'))}" if rb.get("verified") else ""),
             f"- **Resolved:** {when(incident.resolved_at)} UTC" if incident.resolved_at
             else "- **Resolved:** not yet", "",
             "### Timeline (UTC)", "",
             *[f"- {when(at)} {entry}" for at, entry in sorted(timeline, key=lambda e: e[0])[-80:]],
             "", *reflection_section()]
    return t[:250], "\n".join(lines)
