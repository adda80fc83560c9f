"""`/devops status [env]`: what runs where (read from the cluster), the deploy in progress,
what holds each environment and freezes.

An environment is held for two reasons, shown side by side in the `Held` column: a manual
`/devops lock` (who, since when, why) and a deploy or rollback in progress (who, since when, its
phase); tasks/deploy/store.py's `holds` reads both."""

import datetime as dt

from tasks.chatops.core import Invocation, command
from tasks.deploy import keys
from tasks.deploy.gates import freeze_gate
from tasks.deploy.store import DeployStore
from tasks.platform.handlers import CommandHelp


@command("status", CommandHelp(
    usage="status [env]",
    description="Show what runs in each environment, read from the cluster (image, revision, "
                "ready/desired replicas), the deploy or rollback in progress (who, what, phase), "
                "what holds the environment (a manual lock: who, since when, why; a deploy: "
                "who, since when, its phase), and whether a deploy freeze is active; with an "
                "environment, also its revisions and what each one ran.",
    examples=("/devops status", "/devops status production"), who="anyone who can comment"))
def run(inv: Invocation) -> str:
    known = set(inv.config.access) | set(inv.config.environments)
    if inv.args and inv.args[0].lower() not in known:
        inv.reply(f"❌ unknown environment `{inv.args[0][:60]}`. Known: "
                  f"{', '.join(sorted(known)) or 'none'}.")
        return "unknown environment"
    envs = [inv.args[0].lower()] if inv.args else sorted(known)
    freeze = freeze_gate(inv.ctx.gitlab.freeze_periods(inv.project),
                         dt.datetime.now(dt.UTC))
    lines = ["What runs where, read from the cluster:", "",
             "| Environment | Running | Replicas | In progress | Held |", "|---|---|---|---|---|"]
    notes: list[str] = []
    for env in envs:
        status = (inv.ctx.deployer.status(inv.project, env)
                  if env in inv.config.environments else None)
        running, replicas = _running(status)
        cells = (env, running, replicas, _in_progress(status), _lock(inv, env))
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        if status and len(envs) == 1 and status.get("revisions"):
            notes.append(f"Revisions of `{env}`, newest first: " + "; ".join(status["revisions"])
                         + f". `{inv.config.chatops.prefix} rollback {env} <revision>` goes back "
                         "to one.")
        recorded = inv.ctx.redis.hgetall(keys.gitlab_deployment(inv.project, env))
        if recorded:  # GitLab's own deployment records: history, not what runs
            notes.append(f"GitLab's last deployment record for `{env}`: "
                         f"`{recorded[b'ref'].decode()}` at {recorded[b'sha'].decode()[:8]}, "
                         f"{recorded[b'status'].decode()}.")
    lines += ["", *notes, ("🧊 " if not freeze.passed else "") + freeze.detail]
    inv.reply("\n".join(lines))
    return "status"


def _running(status: dict | None) -> tuple[str, str]:
    if status is None:
        return "no target configured", "—"
    live = status.get("live") or {}
    if live.get("error"):
        return f"cannot read the cluster: {live['error'][:200]}", "—"
    serving = live.get("serving") or [{"revision": live.get("revision"), "image": live.get("image"),
                                        "ready": live.get("ready"), "replicas": live.get("replicas")}]
    if len(serving) == 1 and serving[0]["revision"] == live.get("revision"):
        what = f"`{live.get('image')}` (revision {live.get('revision')})"
    else:  # mid-rollout: what the pods run, and what the rollout is heading for
        parts = [f"`{s['image']}` (revision {s['revision']}, {s['ready']} ready)"
                 for s in serving if s["revision"] != live.get("revision")]
        new = next((s for s in serving if s["revision"] == live.get("revision")), None)
        ready = new["ready"] if new else 0
        what = ", ".join(parts) + (f"; rolling out `{live.get('image')}` (revision {live.get('revision')},"
                                   f" {ready} of {live.get('replicas') or 0} ready)")
    if live.get("color"):
        what = f"{live['color']}: {what}"
        idle = live.get("idle")
        if idle and idle.get("replicas"):
            what += f"; idle {idle['color']}: `{idle['image']}` × {idle['replicas']}"
    canary = live.get("canary")
    if canary and canary.get("replicas"):
        what += f", canary `{canary['image']}` × {canary['replicas']}"
    replicas = f"{live.get('ready') or 0}/{live.get('replicas') or 0} ready"
    return what, replicas


def _in_progress(status: dict | None) -> str:
    active = (status or {}).get("active")
    if not active:
        held = (status or {}).get("locked_by")
        return f"held by `{held}`" if held else "—"
    if active["kind"] == "deploy":
        what = f"deploy `{active['id']}` of `{active['image']}`"
    else:
        target = active.get("target") or {}
        to = (f" to revision {target['revision']}" if target.get("revision")
              else f" to {target['color']}" if target.get("color") else "")
        what = f"rollback `{active['id']}`{to}"
    state = (f"paused: {active['reason']}" if active["status"] == "paused"
             else f"phase `{active['phase']}`")
    return f"{what} by @{active['requested_by']}, {state}"


def _lock(inv: Invocation, env: str) -> str:
    """Every reason the environment is held; `unlock` releases only the manual one."""
    holds = DeployStore(inv.ctx.redis).holds(inv.project, env)
    return "; ".join(h.describe() for h in holds) or "—"
