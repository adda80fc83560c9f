"""Who may deploy where, and when: access level, pipeline, approval, freezes, deny windows, locks.

Every gate answers with a reason a person can act on; a refusal names the gate that refused and
how to proceed. `--force "reason"` (Maintainers and above) overrides every gate but access.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from tasks.config.agent import ACCESS_LEVELS, DAYS, DenyWindow, EnvAccess
from tasks.deploy.model import EnvironmentLocked
from tasks.deploy.ports import DeployGitLab
from tasks.deploy.store import DeployStore
from tasks.gitlab.note_commands import parse_note

ACCESS_CACHE_SECONDS = 60
LEVEL_NAMES = {v: k.capitalize() for k, v in ACCESS_LEVELS.items()}


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.name, "passed": self.passed, "detail": self.detail}


def access_level(gitlab: DeployGitLab, redis: Any, project: int, user_id: int) -> int:
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


@dataclass(frozen=True)
class Checked:
    """What the gates looked at: exactly what a deploy that passes them ships."""

    ref: str
    sha: str
    pipeline: int
    status: str


def resolve(gitlab: DeployGitLab, project: int, ref: str) -> Checked | None:
    """The ref's latest pipeline, read once: its SHA is what is checked and what ships."""
    latest = gitlab.latest_pipeline(project, ref)
    if latest is None or not latest.get("sha"):
        return None
    return Checked(ref=ref, sha=str(latest["sha"]), pipeline=int(latest["id"]),
                   status=str(latest.get("status") or ""))


_PASSING = {"success", "skipped", "manual"}


def pipeline_gate(gitlab: DeployGitLab, project: int, checked: Checked) -> Gate:
    """Every job of the pipeline that built the SHA passed (allowed-to-fail ones aside)."""
    if checked.status != "success":
        return Gate("pipeline", False, f"pipeline #{checked.pipeline} for `{checked.ref}` "
                                       f"({checked.sha[:8]}) is {checked.status}; it must have "
                                       "succeeded. Fix or re-run it first.")
    bad = [j for j in gitlab.pipeline_jobs(project, checked.pipeline)
           if j.get("status") not in _PASSING and not j.get("allow_failure")]
    if bad:
        names = ", ".join(f"`{j.get('name')}` ({j.get('status')})" for j in bad[:5])
        return Gate("pipeline", False, f"pipeline #{checked.pipeline} has jobs that did not pass: "
                                       f"{names}. Every stage must pass for {checked.sha[:8]}.")
    return Gate("pipeline", True, f"pipeline #{checked.pipeline} ({checked.sha[:8]}): every job passed")


def security_gate(gitlab: DeployGitLab, project: int, checked: Checked, access: EnvAccess) -> Gate:
    """The SHA's security scans ran and succeeded."""
    def is_scan(job: dict[str, Any]) -> bool:
        name, stage = str(job.get("name") or ""), str(job.get("stage") or "")
        return stage in access.security_stages or any(
            name == n or name.endswith("-" + n) or name.startswith(n + ":")
            for n in access.security_jobs)

    scans = [j for j in gitlab.pipeline_jobs(project, checked.pipeline) if is_scan(j)]
    if not scans:
        return Gate("security", False, f"no security scan ran in pipeline #{checked.pipeline} "
                                       f"(jobs named {', '.join(access.security_jobs)} or in stages "
                                       f"{', '.join(access.security_stages)}). Add GitLab's "
                                       "security templates to .gitlab-ci.yml.")
    failed = [j for j in scans if j.get("status") != "success"]
    if failed:
        names = ", ".join(f"`{j.get('name')}` ({j.get('status')})" for j in failed[:5])
        return Gate("security", False, f"security scans did not pass for {checked.sha[:8]}: "
                                       f"{names}. Fix the findings or re-run them.")
    return Gate("security", True, f"{len(scans)} security scan(s) passed for {checked.sha[:8]}")


def approval_gate(gitlab: DeployGitLab, redis: Any, access: EnvAccess, *, project: int, env: str,
                  checked: Checked, noteable: Any, username: str | None, prefix: str) -> Gate:
    """On a merge request: approved, from this project, for exactly the SHA that ships. On an
    issue: `approvals` notes `<prefix> approve <env>` by others allowed to deploy here."""
    if noteable is None:
        return Gate("approval", False, "this environment needs an approval; run the command on "
                                       "an approved merge request or an issue")
    if noteable.kind == "mr":
        if noteable.source_project_id != noteable.target_project_id:
            return Gate("approval", False, f"!{noteable.iid} comes from a fork; deploys run only "
                                           "from merge requests of this project")
        if checked.ref != noteable.source_branch:
            return Gate("approval", False, f"`{checked.ref}` is not !{noteable.iid}'s source branch "
                                           f"(`{noteable.source_branch}`); an approval covers only "
                                           "its own branch")
        if noteable.sha and noteable.sha != checked.sha:
            return Gate("approval", False, f"!{noteable.iid}'s head is {str(noteable.sha)[:8]} but "
                                           f"the pipeline checked {checked.sha[:8]}; wait for the "
                                           "pipeline of the latest commit")
        approvals = gitlab.mr_approvals(project, noteable.iid)
        if approvals.get("approved") and approvals.get("approvals_left") in (None, 0):
            who = ", ".join("@" + str((a.get("user") or {}).get("username"))
                            for a in approvals.get("approved_by") or [])[:200]
            return Gate("approval", True, f"!{noteable.iid} is approved" + (f" by {who}" if who else ""))
        left = approvals.get("approvals_left")
        return Gate("approval", False, f"!{noteable.iid} is not approved yet"
                                       + (f" ({left} approvals left)" if left else ""))
    approvers = set()
    for note in gitlab.list_notes(project, "issue", noteable.iid):
        author = (note.get("author") or {})
        if note.get("system") or author.get("username") in (None, username):
            continue
        for cmd in parse_note(str(note.get("body") or ""), prefix).commands:
            if cmd.name == "approve" and cmd.args[:1] == (env,) and access_level(
                    gitlab, redis, project, int(author.get("id") or 0)) >= access.min_level:
                approvers.add(author["username"])
    if len(approvers) >= access.approvals:
        return Gate("approval", True, "approved by " + ", ".join(f"@{a}" for a in sorted(approvers)))
    return Gate("approval", False, f"{env} needs {access.approvals} approval(s) from someone else "
                                   f"allowed to deploy there (`{prefix} approve {env}`); "
                                   f"{len(approvers)} so far")


def staging_first_gate(history: Any, project: int, checked: Checked,
                       requires: tuple[str, ...]) -> Gate:
    missing = [r for r in requires if checked.sha not in history.succeeded_shas(project, r)]
    if missing:
        return Gate("staging_first", False, f"{checked.sha[:8]} has not been deployed and verified "
                                            f"healthy on {', '.join(f'`{m}`' for m in missing)}; "
                                            "deploy it there first")
    return Gate("staging_first", True, f"{checked.sha[:8]} is verified on "
                                       + ", ".join(f"`{r}`" for r in requires))


def rollback_plan_gate(history: Any, project: int, env: str) -> Gate:
    last = history.last_succeeded(project, env)
    if last is None:
        return Gate("rollback_plan", False, f"no earlier healthy deploy of `{env}` to roll back to; "
                                            "a first deploy needs a Maintainer's --force \"reason\"")
    return Gate("rollback_plan", True, f"can roll back to {str(last.get('sha'))[:8]} "
                                       f"({last.get('image') or 'the last healthy deploy'})")


def monitoring_gate(env_config: Any, env: str) -> Gate:
    if env_config is not None and (env_config.health_checks or env_config.prometheus):
        n = len(env_config.health_checks) + len(env_config.prometheus)
        return Gate("monitoring", True, f"{n} health/metrics check(s) verify each deploy")
    return Gate("monitoring", False, f"`{env}` has no health checks or Prometheus checks, so a "
                                     "bad deploy would not be noticed; configure "
                                     f"`environments.{env}.health_checks`")


def small_changes_gate(gitlab: DeployGitLab, history: Any, project: int, env: str, checked: Checked,
                       limit: int) -> Gate:
    last = history.last_succeeded(project, env)
    if last is None or not last.get("sha"):
        return Gate("small_changes", True, f"first deploy of `{env}`")
    count = gitlab.commits_between(project, str(last["sha"]), checked.sha)
    if count > limit:
        return Gate("small_changes", False, f"{count} commits since `{env}`'s last deploy "
                                            f"({str(last['sha'])[:8]}); at most {limit}. Deploy "
                                            "smaller steps, or a Maintainer can --force")
    return Gate("small_changes", True, f"{count} commit(s) since the last deploy")


def lock_gate(redis: Any, project: int, env: str, username: str | None) -> Gate:
    """The manual lock (`/devops lock`). A deploy in progress is the service's to refuse
    (DeployLocked): the gates pass, and the refusal names that deploy."""
    manual = DeployStore(redis).manual_lock(project, env)
    if manual is None:
        return Gate("lock", True, f"{env} is not locked")
    hold = manual[1]
    if hold.by == (username or ""):
        return Gate("lock", True, f"{env} is locked by you")
    return Gate("lock", False, str(EnvironmentLocked(env, hold)))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    gates: list[Gate]
    checked: Checked | None  # what was checked, and what ships when allowed

    def refusing(self) -> Gate | None:
        return next((g for g in self.gates if not g.passed), None)

    def checklist(self) -> str:
        return "\n".join(f"- {'✅' if g.passed else '❌'} **{g.name}**: {g.detail}" for g in self.gates)


def evaluate(gitlab: DeployGitLab, redis: Any, access: EnvAccess, *, project: int, env: str,
             ref: str | None, user_id: int, username: str | None, force_reason: str | None,
             action: str = "deploy", noteable: Any = None, history: Any = None,
             env_config: Any = None, prefix: str = "/devops", now: dt.datetime | None = None,
             checklist: bool = False) -> Decision:
    """Every gate of the environment, in order; the access gate first. A deploy's SHA is read
    once (the ref's latest pipeline) and every SHA gate checks that SHA: what passes is what
    ships. `checklist` runs all gates instead of stopping at the first refusal."""
    now = now or dt.datetime.now(dt.UTC)
    level = access_level(gitlab, redis, project, user_id)
    gates = [check_access(level, access.min_level, env)]
    if not gates[0].passed and not checklist:
        return Decision(False, gates, None)
    checked = resolve(gitlab, project, ref) if action == "deploy" and ref else None
    if action == "deploy" and checked is None:
        gates.append(Gate("pipeline", False, f"`{ref}` has no pipeline, so nothing was built "
                                             "to deploy. Push or run a pipeline first."))
        return Decision(False, gates, None)
    if force_reason is not None:
        if level < ACCESS_LEVELS["maintainer"]:
            gates.append(Gate("force", False, "--force is for Maintainers and above"))
        elif len(force_reason.strip()) < 5:
            gates.append(Gate("force", False, '--force needs a written reason: --force "why"'))
        else:
            gates.append(Gate("force", True, f"overridden by @{username}: {force_reason.strip()}"))
        return Decision(all(g.passed for g in gates), gates, checked)

    def add(gate: Gate) -> bool:
        gates.append(gate)
        return gate.passed or checklist

    def run() -> None:
        if not add(lock_gate(redis, project, env, username)):
            return
        if action != "deploy":
            return  # rollback and promote: only who and whether the environment is held
        assert checked is not None
        if access.deny_windows and not add(deny_window_gate(access.deny_windows, now)):
            return
        if access.respect_freeze_periods and not add(freeze_gate(gitlab.freeze_periods(project), now)):
            return
        if access.require_pipeline_success and not add(pipeline_gate(gitlab, project, checked)):
            return
        if access.require_security_scans and not add(security_gate(gitlab, project, checked, access)):
            return
        if access.require_mr_approval and not add(approval_gate(
                gitlab, redis, access, project=project, env=env, checked=checked,
                noteable=noteable, username=username, prefix=prefix)):
            return
        if access.requires and history is not None and not add(
                staging_first_gate(history, project, checked, access.requires)):
            return
        if access.require_rollback_plan and history is not None and not add(
                rollback_plan_gate(history, project, env)):
            return
        if access.require_monitoring and not add(monitoring_gate(env_config, env)):
            return
        if access.max_commits is not None and history is not None:
            add(small_changes_gate(gitlab, history, project, env, checked, access.max_commits))

    run()
    return Decision(all(g.passed for g in gates), gates, checked)
