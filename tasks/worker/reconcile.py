"""Nothing missed while down: find work no webhook brought and feed it through the same path.

GitLab drops events while a hook is disabled after repeated failures and never re-sends a
failed delivery by itself, and nothing arrives while the receiver is down. So, on start and on a
schedule, each configured project's pipelines that failed since the last pass (bounded look-back,
default 24 h) and its ChatOps notes since then are read from the API; each one no handler has
processed yet becomes a delivery in the inbox, marked `reconciled`, with a key of what it is, so
the same pipeline or note is fed at most once (and a webhook that arrives late finds the
handlers' own marks and does nothing twice).

Everything is bounded: projects per pass, pipelines per project, issues and merge requests per
project and notes per noteable.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from tasks.chatops.note_handler import note_checked_key
from tasks.ci.pipeline_failed import triaged_key
from tasks.engine.errors import classify
from tasks.gitlab.note_commands import parse_commands
from tasks.platform import metrics
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.reconcile")

LAST_PASS = "da:reconcile:last-pass"
MAX_PROJECTS = 200
MAX_PIPELINES = 100
MAX_NOTEABLES = 50
MAX_NOTES = 20
# Passes overlap a little: a pipeline that changed while the last pass ran is looked at again.
OVERLAP_SECONDS = 300
# A ChatOps command is an order given at a moment: one older than this is not run late (a deploy
# asked for yesterday, run after a day's outage, would surprise everyone). Failed pipelines are
# facts and are caught up over the whole look-back.
COMMAND_MAX_AGE = 3600


class ReconcileGitLab(Protocol):
    def get_project(self, project: int | str) -> dict: ...
    def group_projects(self, group: str, limit: int = ...) -> list[dict]: ...
    def failed_pipelines(self, project: int | str, updated_after: str,
                         limit: int = ...) -> list[dict]: ...
    def updated_noteables(self, project: int | str, kind: str, updated_after: str,
                          limit: int = ...) -> list[dict]: ...
    def recent_notes(self, project: int | str, kind: str, iid: int,
                     limit: int = ...) -> list[dict]: ...


class Accept(Protocol):
    def __call__(self, *, event: str, kind: str, body: bytes, idempotency_key: str | None,
                 meta: dict[str, Any] | None = None) -> Any: ...


class Marks(Protocol):
    def seen(self, key: str) -> bool: ...


@dataclass
class Report:
    since: float
    projects: int = 0
    pipelines: int = 0
    notes: int = 0
    errors: list[str] = field(default_factory=list)
    # A transient error keeps the pass's start for the next one (a permanent one would not heal).
    transient: bool = False


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _after(stamp: Any, after: str) -> bool:
    try:
        return datetime.fromisoformat(str(stamp)) >= datetime.fromisoformat(after)
    except ValueError:
        return True  # an odd timestamp: let the handler's own checks decide


def since_when(last_pass: float | None, now: float, lookback: float) -> float:
    earliest = now - lookback
    if last_pass is None:
        return earliest
    return max(earliest, last_pass - OVERLAP_SECONDS)


def projects_to_watch(gitlab: ReconcileGitLab, entries: tuple[str, ...],
                      report: Report) -> list[dict]:
    """GITLAB_PROJECTS as projects: ids and paths read one by one, `group/*` listed (subgroups
    included), at most MAX_PROJECTS in all. An entry GitLab cannot resolve is reported."""
    out: dict[int, dict] = {}
    for entry in entries:
        if len(out) >= MAX_PROJECTS:
            log.warning("reconcile: more than %d projects configured; the rest wait for the "
                        "next pass", MAX_PROJECTS)
            break
        with _per_project(report, entry):
            if entry.endswith("/*"):
                for p in gitlab.group_projects(entry[:-2], limit=MAX_PROJECTS - len(out)):
                    out[int(p["id"])] = p
            else:
                p = gitlab.get_project(int(entry) if entry.isdigit() else entry)
                out[int(p["id"])] = p
    return list(out.values())[:MAX_PROJECTS]


@contextlib.contextmanager
def _per_project(report: Report, name: str) -> Iterator[None]:
    """One project's trouble is reported and does not stop the pass; a bug still raises."""
    try:
        yield
    except Exception as exc:  # sorted by kind below
        verdict = classify(exc)
        if verdict.kind == "bug":
            raise
        report.errors.append(f"{name}: {verdict.reason}")
        report.transient = report.transient or verdict.kind == "transient"
        log.warning("reconcile: %s skipped: %s", name, verdict.reason)


def reconcile(gitlab: ReconcileGitLab, accept: Accept, marks: Marks, *, projects: tuple[str, ...],
              since: float, prefix: str = "/devops", chatops: bool = True) -> Report:
    report = Report(since=since)
    after = iso(since)
    commands_after = iso(max(since, time.time() - COMMAND_MAX_AGE))
    for project in projects_to_watch(gitlab, projects, report):
        report.projects += 1
        pid, path = int(project["id"]), str(project.get("path_with_namespace") or "")
        ref = {"id": pid, "path_with_namespace": path, "web_url": project.get("web_url"),
               "default_branch": project.get("default_branch")}
        with _per_project(report, path or str(pid)):
            report.pipelines += _pipelines(gitlab, accept, marks, ref, after)
            if chatops:
                report.notes += _notes(gitlab, accept, marks, ref, commands_after, prefix)
    return report


def _pipelines(gitlab: ReconcileGitLab, accept: Accept, marks: Marks, project: dict,
               after: str) -> int:
    fed = 0
    for p in gitlab.failed_pipelines(project["id"], after, limit=MAX_PIPELINES):
        if marks.seen(triaged_key(project["id"], int(p["id"]))):
            continue
        body = {"object_kind": "pipeline", "object_attributes": {
            "id": p["id"], "iid": p.get("iid"), "ref": p.get("ref"), "sha": p.get("sha"),
            "status": p.get("status"), "source": p.get("source")}, "project": project}
        result = accept(event="Pipeline Hook", kind="pipeline", body=orjson.dumps(body),
                        idempotency_key=f"reconcile:pipeline:{project['id']}:{p['id']}",
                        meta={"reconciled": True, "bound_to": str(project["id"])})
        if not getattr(result, "duplicate", False):
            fed += 1
            log.info("reconcile: pipeline %s of %s had not been processed", p["id"],
                     project["path_with_namespace"], extra={"reconciled": True})
    return fed


def _notes(gitlab: ReconcileGitLab, accept: Accept, marks: Marks, project: dict, after: str,
           prefix: str) -> int:
    fed = 0
    for kind, noteable_type, api_kind in (("issue", "Issue", "issue"),
                                          ("merge_request", "MergeRequest", "mr")):
        for target in gitlab.updated_noteables(project["id"], api_kind, after,
                                               limit=MAX_NOTEABLES):
            for note in gitlab.recent_notes(project["id"], api_kind, int(target["iid"]),
                                            limit=MAX_NOTES):
                if note.get("system") or not _after(note.get("created_at"), after):
                    continue
                # Only what the ChatOps handler would act on: a command at a line's start,
                # outside quotes and code (our own comments mention commands too).
                if prefix not in str(note.get("body") or "") or \
                        not parse_commands(str(note.get("body")), prefix):
                    continue
                if marks.seen(note_checked_key(project["id"], int(note["id"]))):
                    continue
                author = note.get("author") or {}
                body = {"object_kind": "note", "event_type": "note", "project": project,
                        "project_id": project["id"],
                        "user": {"id": author.get("id"), "username": author.get("username"),
                                 "name": author.get("name")},
                        "object_attributes": {
                            "id": note["id"], "note": note.get("body"), "action": "create",
                            "noteable_type": noteable_type, "author_id": author.get("id"),
                            "created_at": note.get("created_at"),
                            "updated_at": note.get("updated_at"), "system": False},
                        kind: {"id": target.get("id"), "iid": target["iid"],
                               "title": target.get("title"), "state": target.get("state")}}
                result = accept(event="Note Hook", kind="note", body=orjson.dumps(body),
                                idempotency_key=f"reconcile:note:{project['id']}:{note['id']}",
                                meta={"reconciled": True, "bound_to": str(project["id"])})
                if not getattr(result, "duplicate", False):
                    fed += 1
    return fed


def run_reconcile(rt: Any) -> Report:
    """The periodic pass (tasks/worker/periodic.py): from the last pass (or the look-back) to now."""

    gitlab = rt.adapter("gitlab")
    now = time.time()
    raw = rt.redis.get(LAST_PASS)
    since = since_when(float(raw) if raw else None, now, rt.settings.reconcile_lookback_seconds)
    if gitlab is None or not rt.settings.gitlab_projects:
        return Report(since=since)
    config = rt.adapter("config")
    prefix = config.chatops.prefix if config is not None else "/devops"
    report = reconcile(gitlab, rt.inbox.accept, Store(rt.redis),
                       projects=rt.settings.gitlab_projects, since=since, prefix=prefix,
                       chatops=any(h.name == "chatops" for h in rt.registry.for_kind(
                           "note", rt.settings.handlers)))
    if not report.transient:
        rt.redis.set(LAST_PASS, repr(now))
    if report.pipelines:
        metrics.RECONCILED.labels(kind="pipeline").inc(report.pipelines)
    if report.notes:
        metrics.RECONCILED.labels(kind="note").inc(report.notes)
    log.info("reconcile: %d project(s) since %s: %d pipeline(s) and %d note(s) fed", report.projects,
             iso(since), report.pipelines, report.notes,
             extra={"reconciled": True, "errors": report.errors[:10]})
    return report
