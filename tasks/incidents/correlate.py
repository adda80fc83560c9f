"""Which deploy came just before an alert: the newest deploy of the environment that was under
way at the alert's start or went live at most `rollback_window` before it, read from the deploy
service's own records (tasks/deploy/store.py), never from the alert."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tasks.deploy.model import DeployRecord


def live_at(rec: DeployRecord) -> float:
    """When the deploy finished (went live): its record's last timeline entry."""
    return float(rec.timeline[-1][0]) if rec.timeline else float(rec.updated_at)


def suspect(history: Iterable[DeployRecord], started: float, window: float) -> DeployRecord | None:
    """The newest successful deploy started before `started` and live no more than `window`
    seconds before it (one still verifying when the alert began counts too)."""
    for rec in history:  # newest first
        if rec.kind != "deploy" or rec.status != "succeeded":
            continue
        if rec.created_at <= started and started - live_at(rec) <= window:
            return rec
    return None


def describe(rec: DeployRecord, started: float, context: dict[str, Any] | None,
             thread_path: str | None) -> dict[str, Any]:
    """What the incident says about the deploy: which, by whom, from which thread."""
    out: dict[str, Any] = {
        "id": rec.id, "project": rec.project, "env": rec.env, "image": rec.image,
        "sha": rec.sha, "ref": rec.ref, "requested_by": rec.requested_by,
        "created_at": rec.created_at, "live_at": live_at(rec),
        "minutes_before": max(0, round((started - live_at(rec)) / 60)),
        "timeline": [list(e) for e in rec.timeline[-20:]], "thread": None,
    }
    reply_to = (context or {}).get("reply_to")
    if context and reply_to and len(reply_to) >= 2 and reply_to[0] in ("issue", "mr"):
        out["thread"] = {"project": context.get("project"), "kind": reply_to[0],
                         "iid": int(reply_to[1]), "path": thread_path}
    return out
