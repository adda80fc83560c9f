"""One comment per issue or MR per subject, tagged with a hidden marker and edited in place.

Users of every bot complain about comment spam more than anything else: so a later event edits
the same note, an unchanged body is not written at all, and creation happens under a lock so two
workers racing on the same subject cannot both post.
"""

from __future__ import annotations

import hashlib
import logging

from tasks.gitlab.client import NotFound
from tasks.gitlab.ports import CommentsPort
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.comments")


def marker(subject: str) -> str:
    return f"<!-- devops-agent:{subject} -->"


def upsert_comment(gitlab: CommentsPort, store: Store, project: int | str, kind: str, iid: int,
                   subject: str, body: str) -> str:
    """Create or edit the comment for `subject`; returns created, updated or unchanged."""

    tag = marker(subject)
    text = f"{tag}\n{body}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    key = f"{project}:{kind}:{iid}:{subject}"
    with store.lock("comment:" + key):
        known = store.comment(key)
        if known and known[1] == digest:
            return "unchanged"
        note_id = known[0] if known else _find_note(gitlab, project, kind, iid, tag)
        if note_id is not None:
            try:
                gitlab.update_note(project, kind, iid, note_id, text)
                store.set_comment(key, note_id, digest)
                return "updated"
            except NotFound:
                log.info("our comment was deleted; posting a new one", extra={"note_id": note_id})
        note = gitlab.create_note(project, kind, iid, text)
        if note.get("id") is not None and not note.get("dry_run"):
            store.set_comment(key, int(note["id"]), digest)
        return "created"


def _find_note(gitlab: CommentsPort, project: int | str, kind: str, iid: int, tag: str) -> int | None:
    """The note carrying `tag`, for when our record of it was lost (Redis flushed)."""
    for note in gitlab.list_notes(project, kind, iid):
        if tag in (note.get("body") or "") and not note.get("system"):
            return int(note["id"])
    return None
