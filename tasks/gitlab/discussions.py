"""The GitLab adapter's calls on issues, merge requests, their labels and their notes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tasks.gitlab.session import KINDS, ProjectRef, Session


class Discussions(Session):
    """Issues and merge requests (GitLab's "noteables": `kind` is "issue" or "mr")."""

    # -- issues and merge requests -----------------------------------------------------------
    def get_issue(self, project: ProjectRef, iid: int) -> dict:
        return self._call("get_issue", lambda: self._plain(self._project(project).issues.get(iid)))

    def find_issues(self, project: ProjectRef, labels: Iterable[str] | None = None,
                    search: str | None = None, state: str | None = "opened") -> list[dict]:
        """Issues having ALL `labels`, matching `search` in title/description, in `state`
        ("opened", "closed", or None/"all")."""
        return self._list("find_issues", self._project(project).issues.list,
                          labels=",".join(labels) if labels else None, search=search,
                          state=None if state == "all" else state)

    def create_issue(self, project: ProjectRef, title: str, description: str = "",
                     labels: Iterable[str] = ()) -> dict:
        fields = {"title": title, "description": description, "labels": ",".join(labels)}
        issues = self._project(project).issues
        return self._write("create_issue", project, fields,
                           lambda: self._plain(issues.create(fields)))

    def update_issue(self, project: ProjectRef, iid: int, **fields: Any) -> dict:
        """PUT the given fields (title, description, labels, add_labels, remove_labels,
        state_event...); label lists may be given as lists."""
        fields = {k: (",".join(v) if k.endswith("labels") and not isinstance(v, str) else v)
                  for k, v in fields.items()}
        issues = self._project(project).issues
        return self._write("update_issue", project, {"iid": iid, **fields},
                           lambda: issues.update(iid, fields))

    def _update_noteable(self, action: str, project: ProjectRef, kind: str, iid: int,
                         fields: dict) -> dict:
        if kind not in KINDS:
            raise ValueError(f"kind must be 'issue' or 'mr', not {kind!r}")
        p = self._project(project)
        mgr = p.issues if kind == "issue" else p.mergerequests
        return self._write(action, project, {"kind": kind, "iid": iid, **fields},
                           lambda: mgr.update(iid, fields))

    def add_labels(self, project: ProjectRef, kind: str, iid: int, labels: Iterable[str]) -> dict:
        return self._update_noteable("add_labels", project, kind, iid,
                                     {"add_labels": ",".join(labels)})

    def remove_labels(self, project: ProjectRef, kind: str, iid: int,
                      labels: Iterable[str]) -> dict:
        return self._update_noteable("remove_labels", project, kind, iid,
                                     {"remove_labels": ",".join(labels)})

    def relabel(self, project: ProjectRef, kind: str, iid: int, add: Iterable[str] = (),
                remove: Iterable[str] = ()) -> dict:
        """Add and remove labels in one PUT (GitLab takes add_labels and remove_labels together)."""
        fields = {k: ",".join(v) for k, v in (("add_labels", list(add)),
                                               ("remove_labels", list(remove))) if v}
        return self._update_noteable("relabel", project, kind, iid, fields)

    def get_mr(self, project: ProjectRef, mr_iid: int) -> dict:
        return self._call("get_mr",
                          lambda: self._plain(self._project(project).mergerequests.get(mr_iid)))

    def mr_closes_issues(self, project: ProjectRef, mr_iid: int) -> list[dict]:
        mr = self._project(project).mergerequests.get(mr_iid, lazy=True)
        return self._list("mr_closes_issues", mr.closes_issues)

    def mr_approvals(self, project: ProjectRef, mr_iid: int) -> dict:
        mr = self._project(project).mergerequests.get(mr_iid, lazy=True)
        return self._call("mr_approvals", lambda: self._plain(mr.approvals.get()))

    def create_mr(self, project: ProjectRef, source_branch: str, target_branch: str, title: str,
                  description: str = "", labels: Iterable[str] = (),
                  remove_source_branch: bool = True) -> dict:
        fields = {"source_branch": source_branch, "target_branch": target_branch,
                  "title": title, "description": description, "labels": ",".join(labels),
                  "remove_source_branch": remove_source_branch}
        mrs = self._project(project).mergerequests
        return self._write("create_mr", project, fields, lambda: self._plain(mrs.create(fields)))

    def find_mrs(self, project: ProjectRef, source_branch: str | None = None,
                 labels: Iterable[str] | None = None, search: str | None = None,
                 state: str | None = "opened") -> list[dict]:
        """Merge requests from `source_branch`, having ALL `labels`, matching `search` in
        title/description, in `state` ("opened", "closed", "merged", or None/"all")."""
        return self._list("find_mrs", self._project(project).mergerequests.list,
                          source_branch=source_branch,
                          labels=",".join(labels) if labels else None, search=search,
                          state=None if state == "all" else state)

    def update_mr(self, project: ProjectRef, mr_iid: int, **fields: Any) -> dict:
        """PUT the given fields (title, description, labels, state_event...)."""
        fields = {k: (",".join(v) if k.endswith("labels") and not isinstance(v, str) else v)
                  for k, v in fields.items()}
        mrs = self._project(project).mergerequests
        return self._write("update_mr", project, {"iid": mr_iid, **fields},
                           lambda: mrs.update(mr_iid, fields))

    def label_events(self, project: ProjectRef, kind: str, iid: int) -> list[dict]:
        """Who added or removed which label, oldest first (resource label events)."""
        obj = self._noteable(project, kind, iid)
        return self._list("label_events", obj.resourcelabelevents.list)

    # -- notes ---------------------------------------------------------------------------------
    def list_notes(self, project: ProjectRef, kind: str, iid: int) -> list[dict]:
        """All notes (system notes included), oldest first."""
        obj = self._noteable(project, kind, iid)
        return self._list("list_notes", obj.notes.list, sort="asc", order_by="created_at")

    def recent_notes(self, project: ProjectRef, kind: str, iid: int, limit: int = 20) -> list[dict]:
        """The newest `limit` notes, newest first."""
        obj = self._noteable(project, kind, iid)
        return self._first(limit, "recent_notes", obj.notes.list, sort="desc",
                           order_by="created_at")

    def updated_noteables(self, project: ProjectRef, kind: str, updated_after: str,
                          limit: int = 50) -> list[dict]:
        """Open issues or merge requests changed after `updated_after`, newest change first."""
        p = self._project(project)
        mgr = p.issues if kind == "issue" else p.mergerequests
        return self._first(limit, "updated_noteables", mgr.list, state="opened",
                           updated_after=updated_after, order_by="updated_at", sort="desc")

    def get_note(self, project: ProjectRef, kind: str, iid: int, note_id: int) -> dict:
        """One note as GitLab has it now (author, body, system, created_at, updated_at)."""
        notes = self._noteable(project, kind, iid).notes
        return self._call("get_note", lambda: self._plain(notes.get(note_id)))

    def create_note(self, project: ProjectRef, kind: str, iid: int, body: str) -> dict:
        notes = self._noteable(project, kind, iid).notes
        return self._write("create_note", project, {"kind": kind, "iid": iid, "body": body},
                           lambda: self._plain(notes.create({"body": body})))

    def update_note(self, project: ProjectRef, kind: str, iid: int, note_id: int,
                    body: str) -> dict:
        notes = self._noteable(project, kind, iid).notes
        return self._write("update_note", project,
                           {"kind": kind, "iid": iid, "note_id": note_id, "body": body},
                           lambda: notes.update(note_id, {"body": body}))

    def award_emoji(self, project: ProjectRef, kind: str, iid: int, note_id: int,
                    name: str) -> dict:
        """Award `name` (e.g. "eyes", "white_check_mark") on a note."""
        note = self._noteable(project, kind, iid).notes.get(note_id, lazy=True)
        return self._write("award_emoji", project,
                           {"kind": kind, "iid": iid, "note_id": note_id, "name": name},
                           lambda: self._plain(note.awardemojis.create({"name": name})))
