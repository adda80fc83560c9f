"""An incident's state in Redis: one JSON record per alert group, written under the group's lock.

`da:incident:<digest of groupKey>` holds the issue it is kept in, every alert seen (by
fingerprint, the newest firing of each), the suspected deploy, the automatic rollback and the
post-mortem. Losing it loses no issue: the issue carries a marker and is found again by it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from tasks.config.incidents import IncidentsConfig
from tasks.incidents.escape import code
from tasks.incidents.mapping import severity_of
from tasks.platform.store import Store

TTL = 90 * 86400
MAX_TRACKED = 500       # alerts remembered per incident (the oldest resolved go first)
MAX_TIMELINE = 200
MAX_TEXT = 4000         # an annotation kept per alert; rendering shows less


def digest(group_key: str) -> str:
    return hashlib.sha256(group_key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass
class Incident:
    digest: str
    group_key: str
    iid: int | None = None
    project: str | None = None           # where the issue is
    status: str = "firing"
    opened_at: float = 0.0               # the current episode's first firing
    resolved_at: float | None = None
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)     # env, project, how
    suspect: dict[str, Any] | None = None                     # the deploy just before
    rollback: dict[str, Any] | None = None
    postmortem: int | None = None
    timeline: list[list[Any]] = field(default_factory=list)  # [unix time, text]
    meta: dict[str, Any] = field(default_factory=dict)       # receiver, externalURL, truncated

    def log(self, at: float, text: str) -> None:
        if [at, text] not in self.timeline:
            self.timeline.append([at, text])
            self.timeline.sort(key=lambda e: e[0])
            del self.timeline[:-MAX_TIMELINE]

    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts.values() if a["status"] == "firing"]

    def first_start(self) -> float | None:
        starts = [a["starts_at"] for a in self.firing()] or \
            [a["starts_at"] for a in self.alerts.values()]
        return min(starts) if starts else None


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def row(alert: Any, incidents: IncidentsConfig) -> dict[str, Any]:
    ann = alert.annotations
    return {"fingerprint": alert.fingerprint, "status": alert.status, "name": alert.name,
            "labels": dict(alert.labels), "severity": severity_of(alert.labels, incidents),
            "summary": (ann.get("summary") or ann.get("message") or "")[:MAX_TEXT],
            "description": (ann.get("description") or "")[:MAX_TEXT],
            "summary_bytes": len(ann.get("summary") or ann.get("message") or ""),
            "description_bytes": len(ann.get("description") or ""),
            "starts_at": _ts(alert.starts_at), "ends_at": _ts(alert.ends_at),
            "url": alert.generator_url}


def merge(incident: Incident, alerts: list[Any], incidents: IncidentsConfig) -> int:
    """Fold a notification's alerts in; returns how many changed. A later startsAt is a new
    firing; for the same startsAt a resolve is final (a retried older copy saying "firing"
    does not undo it)."""
    changed = 0
    for alert in alerts:
        new = row(alert, incidents)
        old = incident.alerts.get(alert.fingerprint)
        if old is not None and (new["starts_at"] < old["starts_at"] or (
                new["starts_at"] == old["starts_at"] and old["status"] == "resolved"
                and new["status"] == "firing")):
            continue
        if old == new:
            continue
        incident.alerts[alert.fingerprint] = new
        changed += 1
        if new["status"] == "firing" and (old is None or old["starts_at"] != new["starts_at"]):
            incident.log(new["starts_at"], f"alert {code(new['name'], 80)} started firing")
        if new["status"] == "resolved":
            incident.log(new["ends_at"] or new["starts_at"], f"alert {code(new['name'], 80)} resolved")
    if len(incident.alerts) > MAX_TRACKED:
        order = sorted(incident.alerts.values(),
                       key=lambda a: (a["status"] == "firing", a["starts_at"]))
        for stale in order[:len(incident.alerts) - MAX_TRACKED]:
            del incident.alerts[stale["fingerprint"]]
    return changed


class IncidentStore:
    def __init__(self, redis: Any) -> None:
        self.r = redis

    @staticmethod
    def key(d: str) -> str:
        return f"da:incident:{d}"

    def load(self, d: str) -> Incident | None:
        raw = self.r.get(self.key(d))
        return Incident(**json.loads(raw)) if raw else None

    def save(self, incident: Incident) -> None:
        self.r.set(self.key(incident.digest), json.dumps(asdict(incident), sort_keys=True), ex=TTL)

    @contextlib.contextmanager
    def lock(self, d: str) -> Iterator[None]:
        # Everything an incident shows is written by its lock holder: a notification and the
        # rollback's follow-up never interleave their edits of one issue.
        with Store(self.r).lock("incident:" + d, ttl=10.0, wait=60.0):
            yield
