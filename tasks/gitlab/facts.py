"""Facts re-read from GitLab before acting: a webhook body is only a hint that something changed.

Whoever holds a hook's secret can write any body, and an honest body can be stale by the time
a worker runs. So before an action, handlers read from the API what the action depends on: the
project (and that the delivery's secret is bound to it), the note (author, body, system, edited
or not), the issue or MR it sits on (open or not), who added a trigger label (resource label
events). A forged or stale field then changes nothing.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from typing import Any

from tasks.gitlab.client import NotFound
from tasks.gitlab.ports import FactsPort

log = logging.getLogger("devops_agent.facts")


@dataclass(frozen=True)
class ProjectFacts:
    id: int
    path: str
    default_branch: str | None


@dataclass(frozen=True)
class NoteFacts:
    id: int
    body: str
    author_id: int
    author: str
    system: bool
    edited: bool


@dataclass(frozen=True)
class NoteableFacts:
    kind: str  # issue | mr
    iid: int
    state: str  # opened | closed | merged | locked
    labels: tuple[str, ...]
    source_branch: str | None = None
    source_project_id: int | None = None
    target_project_id: int | None = None
    sha: str | None = None

    @property
    def open(self) -> bool:
        return self.state == "opened"


def project_allowed(settings: Any, project_id: int, path: str | None) -> bool:
    """GITLAB_PROJECTS: ids, full paths, or `group/*`; an empty list allows none."""
    for entry in settings.gitlab_projects:
        if entry == str(project_id) or (path and entry == path):
            return True
        if path and entry.endswith("/*") and path.startswith(entry[:-1]):
            return True
    return False


def bound(glob: str | None, project: ProjectFacts) -> bool:
    """Whether the secret the delivery came with is bound to `project`: `*` (the global
    secret, one trust domain), a numeric id, or a path glob (`acme/*`)."""
    if glob is None or glob == "*":
        return True
    if glob.isdigit():
        return int(glob) == project.id
    return fnmatch.fnmatchcase(project.path, glob)


def project_facts(gitlab: FactsPort, project_id: int) -> ProjectFacts:
    raw = gitlab.get_project(project_id)
    return ProjectFacts(id=int(raw["id"]), path=str(raw.get("path_with_namespace") or ""),
                        default_branch=raw.get("default_branch"))


def check_project(ctx: Any, project_id: int) -> str | None:
    """Why a handler must leave this project alone, or None. Reads the project from GitLab
    once per delivery and checks the allow-list and the secret's binding against what GitLab
    says, not against the body."""

    if ctx.gitlab is None:
        return "GITLAB_URL/GITLAB_TOKEN not configured"
    cached = getattr(ctx, "project", None)
    if cached is None or cached.id != project_id:
        try:
            cached = project_facts(ctx.gitlab, project_id)
        except NotFound:
            return f"project {project_id} does not exist or the bot cannot see it"
        ctx.project = cached
    if not project_allowed(ctx.settings, cached.id, cached.path):
        return "project is not in GITLAB_PROJECTS"
    meta = getattr(ctx, "meta", None) or {}
    glob = meta.get("bound_to")
    if not bound(glob, cached):
        log.warning("delivery's secret is bound to %s, not to %s", glob, cached.path)
        return f"the delivery's secret is bound to `{glob}`, not to {cached.path}"
    return None


def note_facts(gitlab: FactsPort, project: int, kind: str, iid: int, note_id: int) -> NoteFacts:
    raw = gitlab.get_note(project, kind, iid, note_id)
    author = raw.get("author") or {}
    return NoteFacts(id=int(raw["id"]), body=str(raw.get("body") or ""),
                     author_id=int(author.get("id") or 0), author=str(author.get("username") or ""),
                     system=bool(raw.get("system")),
                     edited=bool(raw.get("updated_at") and raw.get("created_at")
                                 and raw["updated_at"] != raw["created_at"]))


def noteable_facts(gitlab: FactsPort, project: int, kind: str, iid: int) -> NoteableFacts:
    raw = gitlab.get_issue(project, iid) if kind == "issue" else gitlab.get_mr(project, iid)
    return NoteableFacts(kind=kind, iid=iid, state=str(raw.get("state") or ""),
                         labels=tuple(raw.get("labels") or ()),
                         source_branch=raw.get("source_branch"),
                         source_project_id=raw.get("source_project_id"),
                         target_project_id=raw.get("target_project_id"), sha=raw.get("sha"))


def label_added_by(gitlab: FactsPort, project: int, kind: str, iid: int,
                   label: str) -> tuple[dict[str, Any], int, bool] | None:
    """(user, event id, removed since) of the latest event adding `label`; `removed` says a
    later event took it off again."""
    added, removed = None, False
    for event in gitlab.label_events(project, kind, iid):
        if (event.get("label") or {}).get("name") != label:
            continue
        if event.get("action") == "add":
            added, removed = event, False
        elif added is not None:
            removed = True
    if added is None:
        return None
    return dict(added.get("user") or {}), int(added.get("id") or 0), removed
