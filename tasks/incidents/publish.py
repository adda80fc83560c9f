"""Writing an incident to GitLab: find or create its issue (by the marker in it), edit it in
place, keep the one comment in the suspected deploy's thread, and the post-mortem.

Idempotent: the issue is found by its marker before one is created, so neither a redelivered
notification nor a lost Redis record opens a second one; an edit whose text, labels and state
are what was written last is not sent again; a create that timed out is resolved by looking for
the marker again, never by creating blindly.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime
from typing import Any, Protocol

from tasks.config.incidents import IncidentsConfig
from tasks.gitlab.client import GitLabUnavailable, NotFound
from tasks.gitlab.comments import marker, upsert_comment
from tasks.incidents import render
from tasks.incidents.store import Incident
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.incidents")

POSTMORTEM_LABELS = ("devops-agent:postmortem",)


class IssuePort(Protocol):
    """The GitLab calls an incident makes (tasks/gitlab/client.py has them all)."""

    def get_issue(self, project: Any, iid: int) -> dict: ...
    def find_issues(self, project: Any, labels: Any = None, search: str | None = None,
                    state: str | None = "opened") -> list[dict]: ...
    def create_issue(self, project: Any, title: str, description: str = "",
                     labels: Any = ()) -> dict: ...
    def update_issue(self, project: Any, iid: int, **fields: Any) -> dict: ...
    def list_notes(self, project: Any, kind: str, iid: int) -> list[dict]: ...
    def create_note(self, project: Any, kind: str, iid: int, body: str) -> dict: ...
    def update_note(self, project: Any, kind: str, iid: int, note_id: int, body: str) -> dict: ...


def find_marked(gitlab: IssuePort, project: Any, tag: str) -> dict | None:
    """The newest issue whose description carries `tag`."""
    needle = tag.removeprefix("<!-- ").removesuffix(" -->")
    found = [i for i in gitlab.find_issues(project, search=needle, state="all")
             if tag in (i.get("description") or "")]
    return max(found, key=lambda i: int(i["iid"]), default=None)


def _created(gitlab: IssuePort, project: Any, tag: str, title: str, body: str,
             labels: list[str]) -> dict:
    try:
        return gitlab.create_issue(project, title, body, labels)
    except GitLabUnavailable:
        # The create may have happened: read before anything is sent again.
        found = find_marked(gitlab, project, tag)
        if found is None:
            raise
        return found


def _closed_at(issue: dict) -> float | None:
    raw = issue.get("closed_at")
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def ensure_issue(gitlab: IssuePort, incident: Incident, cfg: IncidentsConfig, now: float) -> bool:
    """Make sure `incident.iid` names its issue (found or created); True when created."""
    project = incident.project
    if incident.iid:
        try:
            issue = gitlab.get_issue(project, incident.iid)
            incident.meta["issue_state"] = issue.get("state")
            return False
        except NotFound:
            incident.iid = None  # deleted: find another or open a new one
    tag = render.issue_marker(incident.digest)
    found = find_marked(gitlab, project, tag)
    if found is not None and int(found["iid"]) != incident.meta.get("previous_iid"):
        closed = _closed_at(found) if found.get("state") == "closed" else None
        refired = [a for a in incident.firing() if closed is not None and a["starts_at"] > closed]
        if not (closed is not None and now - closed > cfg.reopen_seconds and refired):
            incident.iid = int(found["iid"])
            incident.meta["issue_state"] = found.get("state")
            return False
    issue = _created(gitlab, project, tag, render.title(incident),
                     render.issue_body(incident, cfg.max_alerts_shown,
                                       int(cfg.rollback_seconds // 60)),
                     labels(incident, cfg)[0])
    incident.iid = int(issue["iid"])
    incident.meta["issue_state"] = issue.get("state", "opened")
    return True


def labels(incident: Incident, cfg: IncidentsConfig) -> tuple[list[str], list[str]]:
    """(labels to have, labels to remove) for the incident's state and severity."""
    ours = cfg.labels
    severity = incident.meta.get("severity", "unknown")
    every = [ours.severity.replace("{severity}", s) for s in (*cfg.severity_levels, "unknown")]
    have = ours.severity.replace("{severity}", severity)
    status = ours.firing if incident.status == "firing" else ours.resolved
    other = ours.resolved if incident.status == "firing" else ours.firing
    return [status, have, *ours.always], [other, *[x for x in every if x != have]]


def write_issue(gitlab: IssuePort, incident: Incident, cfg: IncidentsConfig) -> str:
    """Edit the issue to match the incident; "unchanged" when it already does."""
    assert incident.iid is not None
    body = render.issue_body(incident, cfg.max_alerts_shown, int(cfg.rollback_seconds // 60))
    add, remove = labels(incident, cfg)
    state = incident.meta.get("issue_state")
    event = None
    if incident.status == "resolved" and cfg.close_on_resolve and state != "closed":
        event = "close"
    elif incident.status == "firing" and state == "closed":
        event = "reopen"
    title = render.title(incident)
    digest = hashlib.sha256("\0".join([title, body, *add, "|", *remove]).encode()).hexdigest()
    if digest == incident.meta.get("written") and event is None:
        return "unchanged"
    fields: dict[str, Any] = {"title": title, "description": body, "add_labels": add,
                              "remove_labels": remove}
    if event:
        fields["state_event"] = event
    gitlab.update_issue(incident.project, incident.iid, **fields)
    incident.meta["written"] = digest
    if event:
        incident.meta["issue_state"] = "closed" if event == "close" else "opened"
    return "updated"


def incident_ref(incident: Incident) -> str:
    return f"{incident.meta.get('project_path') or incident.project}#{incident.iid}"


def thread_comment(gitlab: IssuePort, store: Store, incident: Incident) -> str | None:
    """The one comment in the suspected deploy's thread, edited as the incident moves on."""
    thread = (incident.suspect or {}).get("thread")
    if not thread:
        return None
    return upsert_comment(gitlab, store, thread["project"], thread["kind"], thread["iid"],
                          f"incident:{incident.digest}",
                          render.thread_comment(incident, incident_ref(incident)))


def ensure_postmortem(gitlab: IssuePort, incident: Incident) -> str:
    """File (or edit) the post-mortem of an automatic rollback."""
    title, body = render.postmortem(incident, incident_ref(incident))
    tag = marker(f"incident-postmortem:{incident.digest}")
    if incident.postmortem is None:
        found = find_marked(gitlab, incident.project, tag)
        if found is None:
            made = _created(gitlab, incident.project, tag, title, body, list(POSTMORTEM_LABELS))
            incident.postmortem = int(made["iid"])
            incident.meta["postmortem_written"] = hashlib.sha256(body.encode()).hexdigest()
            return "created"
        incident.postmortem = int(found["iid"])
    digest = hashlib.sha256(body.encode()).hexdigest()
    if digest == incident.meta.get("postmortem_written"):
        return "unchanged"
    gitlab.update_issue(incident.project, incident.postmortem, description=body)
    incident.meta["postmortem_written"] = digest
    return "updated"


def now() -> float:
    return time.time()
