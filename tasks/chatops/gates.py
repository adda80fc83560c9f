"""Who may deploy where, and when: access level, pipeline, approval, freezes, deny windows, locks.

Every gate answers with a reason a person can act on; a refusal names the gate that refused and
how to proceed. `--force "reason"` (Maintainers and above) overrides every gate but access.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from tasks.config import ACCESS_LEVELS, DAYS, DenyWindow, EnvAccess

ACCESS_CACHE_SECONDS = 60
LEVEL_NAMES = {v: k.capitalize() for k, v in ACCESS_LEVELS.items()}


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.name, "passed": self.passed, "detail": self.detail}


def access_level(gitlab: Any, redis: Any, project: int, user_id: int) -> int:
    """The user's inherited access level, cached briefly (membership rarely changes mid-deploy)."""
    key = f"da:access:{project}:{user_id}"
    cached = redis.get(key)
    if cached is not None:
        return int(cached)
    level = int(gitlab.access_level(project, user_id))
    redis.set(key, level, ex=ACCESS_CACHE_SECONDS)
    return level


def check_access(level: int, needed: int, env: str) -> Gate:
    have = LEVEL_NAMES.get(level, "no access" if level == 0 else str(level))
    want = LEVEL_NAMES.get(needed, str(needed))
    if level >= needed:
        return Gate("access", True, f"{have} ≥ {want}")
    return Gate("access", False, f"{env} needs {want} access or higher; you have {have}. "
                                 f"Ask a {want} of this project to run it.")


def freeze_gate(periods: list[dict[str, Any]], now: dt.datetime) -> Gate:
    """GitLab deploy freezes: inside when the last start is more recent than the last end."""
    from croniter import croniter

    for period in periods:
        tz = ZoneInfo(period.get("cron_timezone") or "UTC")
        # croniter's get_prev is strictly before its base: nudge the base so that a boundary
        # falling exactly on `now` counts (a freeze starting at 23:00 is active at 23:00).
        local = now.astimezone(tz) + dt.timedelta(seconds=1)
        try:
            last_start = croniter(period["freeze_start"], local).get_prev(dt.datetime)
            last_end = croniter(period["freeze_end"], local).get_prev(dt.datetime)
            next_end = croniter(period["freeze_end"], local).get_next(dt.datetime)
        except (KeyError, ValueError) as exc:
            return Gate("freeze", False, f"a freeze period could not be read ({exc}); refusing "
                                         "to deploy until it is fixed in Settings → CI/CD")
        if last_start > last_end:
            return Gate("freeze", False,
                        f"deploy freeze `{period['freeze_start']}` → `{period['freeze_end']}` "
                        f"({tz.key}) is active until {next_end:%a %Y-%m-%d %H:%M} {tz.key}. "
                        "Wait for it to end, or a Maintainer can use --force \"reason\".")
    return Gate("freeze", True, "no deploy freeze is active")


def _minute_of_week(when: str) -> int:
    day, hm = when.split()
    hours, minutes = hm.split(":")
    return DAYS.index(day) * 1440 + int(hours) * 60 + int(minutes)


def deny_window_gate(windows: tuple[DenyWindow, ...], now: dt.datetime) -> Gate:
    for w in windows:
        local = now.astimezone(ZoneInfo(w.timezone))
        n = local.weekday() * 1440 + local.hour * 60 + local.minute
        s, e = _minute_of_week(w.start), _minute_of_week(w.end)
        inside = s <= n < e if s <= e else (n >= s or n < e)
        if inside:
            return Gate("deny_window", False,
                        f"no deploys from {w.start} to {w.end} ({w.timezone}). Wait until "
                        f"{w.end}, or a Maintainer can use --force \"reason\".")
    return Gate("deny_window", True, "outside every deny window")


def pipeline_gate(gitlab: Any, project: int, ref: str) -> Gate:
    latest = gitlab.latest_pipeline(project, ref)
    if latest is None:
        return Gate("pipeline", False, f"`{ref}` has no pipeline; run one first")
    if latest.get("status") != "success":
        return Gate("pipeline", False, f"the latest pipeline for `{ref}` (#{latest.get('id')}) "
                                       f"is {latest.get('status')}; it must have succeeded")
    return Gate("pipeline", True, f"pipeline #{latest.get('id')} succeeded")


def approval_gate(gitlab: Any, project: int, mr_iid: int | None) -> Gate:
    if mr_iid is None:
        return Gate("approval", False, "this environment needs an approved merge request; run "
                                       "the command on the merge request")
    approvals = gitlab.mr_approvals(project, mr_iid)
    if approvals.get("approved") or approvals.get("approvals_left") == 0:
        return Gate("approval", True, f"!{mr_iid} is approved")
    return Gate("approval", False, f"!{mr_iid} is not approved yet "
                                   f"({approvals.get('approvals_left', '?')} approvals left)")


def env_lock_key(project: int, env: str) -> str:
    return f"da:envlock:{project}:{env}"


def lock_gate(redis: Any, project: int, env: str, username: str | None) -> Gate:
    raw = redis.get(env_lock_key(project, env))
    if raw is None:
        return Gate("lock", True, f"{env} is not locked")
    held = orjson.loads(raw)
    if held.get("user") == username:
        return Gate("lock", True, f"{env} is locked by you")
    return Gate("lock", False, f"{env} is locked by @{held.get('user')}: {held.get('reason')}. "
                               f"Ask them to `unlock {env}`.")


def evaluate(gitlab: Any, redis: Any, access: EnvAccess, *, project: int, env: str, ref: str,
             user_id: int, username: str | None, mr_iid: int | None, force_reason: str | None,
             now: dt.datetime | None = None) -> tuple[bool, list[Gate]]:
    """(allowed, gates) — the access gate first; the others are skipped once it refuses."""
    now = now or dt.datetime.now(dt.timezone.utc)
    level = access_level(gitlab, redis, project, user_id)
    gates = [check_access(level, access.min_level, env)]
    if not gates[0].passed:
        return False, gates
    if force_reason is not None:
        if level < ACCESS_LEVELS["maintainer"]:
            gates.append(Gate("force", False, "--force is for Maintainers and above"))
            return False, gates
        if len(force_reason.strip()) < 5:
            gates.append(Gate("force", False, '--force needs a written reason: --force "why"'))
            return False, gates
        gates.append(Gate("force", True, f"overridden by @{username}: {force_reason.strip()}"))
        return True, gates
    gates.append(lock_gate(redis, project, env, username))
    if access.deny_windows:
        gates.append(deny_window_gate(access.deny_windows, now))
    if access.respect_freeze_periods:
        gates.append(freeze_gate(gitlab.freeze_periods(project), now))
    if access.require_pipeline_success:
        gates.append(pipeline_gate(gitlab, project, ref))
    if access.require_mr_approval:
        gates.append(approval_gate(gitlab, project, mr_iid))
    return all(g.passed for g in gates), gates
