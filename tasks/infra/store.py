"""Plans and applies in Redis.

`da:infra:plan:<project>:<env>`: the environment's last plan (JSON, expiring after the
environment's `plan_ttl`: an old plan is stale and cannot be applied). `da:infra:apply:<plan
id>`: the one apply of that plan, claimed before anything is sent (`applying`, with who and
when), then its result (`done`): the effect is keyed by plan id, so a redelivered or repeated
apply never applies twice. `da:infra:inventory:<project>:<env>`: the kinds the last apply
held, so the next plan also looks for prune candidates of kinds the manifests dropped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

APPLY_TTL = 30 * 24 * 3600


@dataclass
class Plan:
    id: str
    project: int
    env: str
    ref: str
    sha: str
    digest: str
    planned_by: str
    planned_at: float
    # one entry per object: key, kind (apiVersion, kind, plural), status (created | changed |
    # unchanged | conflict | invalid), the object to apply, the dry-run answer, changes
    objects: list[dict[str, Any]] = field(default_factory=list)
    prune: list[str] = field(default_factory=list)
    snippet_url: str | None = None

    @property
    def blocked(self) -> list[dict[str, Any]]:
        """Objects the API server refused in the dry run: such a plan cannot be applied."""
        return [o for o in self.objects if o["status"] in ("conflict", "invalid")]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.objects:
            out[o["status"]] = out.get(o["status"], 0) + 1
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Plan:
        return cls(**orjson.loads(raw))


class PlanStore:
    def __init__(self, redis: Any) -> None:
        self.r = redis

    @staticmethod
    def plan_key(project: int, env: str) -> str:
        return f"da:infra:plan:{project}:{env}"

    def save(self, plan: Plan, ttl: float) -> None:
        self.r.set(self.plan_key(plan.project, plan.env), plan.to_json(), px=int(ttl * 1000))

    def load(self, project: int, env: str) -> Plan | None:
        raw = self.r.get(self.plan_key(project, env))
        return Plan.from_json(raw) if raw else None

    # ----- the apply effect, keyed by plan id
    def claim_apply(self, plan_id: str, by: str) -> dict[str, Any] | None:
        """None when this call claimed the apply; else what the earlier claim recorded."""
        key = f"da:infra:apply:{plan_id}"
        mine = {"state": "applying", "by": by, "at": time.time()}
        if self.r.set(key, orjson.dumps(mine), nx=True, ex=APPLY_TTL):
            return None
        raw = self.r.get(key)
        return orjson.loads(raw) if raw else {"state": "applying"}

    def finish_apply(self, plan_id: str, result: dict[str, Any]) -> None:
        self.r.set(f"da:infra:apply:{plan_id}", orjson.dumps({"state": "done", **result}),
                   ex=APPLY_TTL)

    def release_apply(self, plan_id: str) -> None:
        """Nothing was sent: a later apply of the plan may try again."""
        self.r.delete(f"da:infra:apply:{plan_id}")

    # ----- what the last apply held
    def set_inventory(self, project: int, env: str, kinds: list[dict[str, str]]) -> None:
        self.r.set(f"da:infra:inventory:{project}:{env}", orjson.dumps(kinds), ex=APPLY_TTL * 12)

    def inventory(self, project: int, env: str) -> list[dict[str, str]]:
        raw = self.r.get(f"da:infra:inventory:{project}:{env}")
        return list(orjson.loads(raw)) if raw else []
