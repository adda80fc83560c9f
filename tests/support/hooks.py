"""Webhook bodies the way GitLab sends them: for something that happened in the fake first.

The workers re-read from GitLab's API what a hook claims (tasks/gitlab/facts.py), so a test that only
posts a hand-made body tests nothing real. These helpers make the change in the fake GitLab
(a note written by a user, a label added by a user) and build the hook from the documented
payload in fixtures/payloads/ with the ids, body and author GitLab would put in it. Tests that
forge a field start from these and change it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson

PAYLOADS = Path(__file__).resolve().parents[2] / "fixtures" / "payloads"


def _load(name: str) -> dict[str, Any]:
    return orjson.loads((PAYLOADS / name).read_bytes())


def note_hook(fake: Any, project: int, iid: int, body: str, user_id: int, username: str,
              kind: str = "issue") -> dict[str, Any]:
    """A person writes `body` on issue/MR `iid`; the Note Hook GitLab sends for it."""
    note = fake.add_note(project, kind, iid, body, author_id=user_id)
    payload = copy.deepcopy(_load("note_issue_command.json" if kind == "issue"
                                  else "note_mr_command.json"))
    payload["user"] = {**payload["user"], "id": user_id, "username": username}
    attrs = payload["object_attributes"]
    attrs.update(id=note["id"], note=body, author_id=user_id, action="create",
                 created_at=note["created_at"], updated_at=note["updated_at"])
    target = payload["issue" if kind == "issue" else "merge_request"]
    target["iid"] = iid
    return payload


def label_hook(fake: Any, project: int, iid: int, label: str, user_id: int, username: str,
               kind: str = "issue") -> dict[str, Any]:
    """A person adds `label` to issue/MR `iid` in GitLab's UI; the hook GitLab sends for it."""
    before = fake.relabel_as(project, kind, iid, user_id, add=[], remove=[])["labels"]
    after = fake.relabel_as(project, kind, iid, user_id, add=[label], remove=[])["labels"]
    payload = copy.deepcopy(_load("issue_labels_changed.json" if kind == "issue"
                                  else "merge_request_labels_changed.json"))
    payload["user"] = {**payload["user"], "id": user_id, "username": username}
    payload["object_attributes"]["iid"] = iid
    payload["labels"] = [{"id": i, "title": t} for i, t in enumerate(after)]
    payload["changes"]["labels"] = {
        "previous": [{"id": i, "title": t} for i, t in enumerate(before)],
        "current": [{"id": i, "title": t} for i, t in enumerate(after)]}
    return payload
