"""What a plan and an apply look like in the thread, bounded; the full plan for a snippet."""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml

from tasks.infra.diff import show
from tasks.infra.store import Plan

MAX_REPLY_CHARS = 8000
MAX_FIELDS_SHOWN = 15
ICONS = {"created": "➕ create", "changed": "✏️ change", "unchanged": "unchanged",
         "conflict": "⚠️ conflict", "invalid": "❌ refused"}


def _code(text: Any, limit: int = 160) -> str:
    """Text for inside a code span: no backticks, no line breaks, bounded."""
    s = str(text).replace("`", "'").replace("\n", " ").replace("\r", " ")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def summary(plan: Plan) -> str:
    counts = plan.counts()
    parts = [f"{counts[k]} to {w}" for k, w in (("created", "create"), ("changed", "change"))
             if counts.get(k)]
    parts += [f"{counts[k]} {k}" for k in ("unchanged", "conflict", "invalid") if counts.get(k)]
    prune = f", {len(plan.prune)} prune candidate{'s' if len(plan.prune) != 1 else ''}" \
        if plan.prune else ""
    return ", ".join(parts) + prune


def plan_reply(plan: Plan, *, prefix: str, ttl: float, full_link: str | None = None,
               link_error: str | None = None, limit: int = MAX_REPLY_CHARS) -> tuple[str, bool]:
    """(reply, incomplete: something is only in the full plan). The table always fits (at
    most max_objects rows); per-object field lists are cut at MAX_FIELDS_SHOWN, and stop
    altogether once the reply reaches `limit`."""
    until = dt.datetime.fromtimestamp(plan.planned_at + ttl, dt.UTC).strftime("%H:%M UTC")
    head = [f"📋 plan `{plan.id}` for `{plan.env}`: `{_code(plan.ref, 80)}` at {plan.sha[:8]}, "
            f"by @{plan.planned_by}. **{summary(plan)}.**", "",
            "| Object | Plan |", "|---|---|"]
    for o in plan.objects:
        what = ICONS.get(o["status"], o["status"])
        if o["status"] == "changed":
            what += f" ({len(o['changes'])} field{'s' if len(o['changes']) != 1 else ''})"
        head.append(f"| {o['key']} | {what} |")
    tail: list[str] = []
    if plan.prune:
        tail += ["", "🗑️ Prune candidates (labelled for this environment, no longer in the "
                     "manifests; **not deleted**): " + ", ".join(f"`{p}`" for p in plan.prune[:30])
                 + (f" and {len(plan.prune) - 30} more" if len(plan.prune) > 30 else "")]
    if plan.blocked:
        tail += ["", f"⚠️ the API server refused {len(plan.blocked)} object(s) in the dry run, so "
                     "this plan cannot be applied:"]
        tail += [f"- {o['key']}: {_code(o['detail'], 300)}" for o in plan.blocked[:10]]
    else:
        tail += ["", f"`{prefix} apply {plan.env}` applies exactly this plan while "
                     f"`{_code(plan.ref, 80)}` stays at {plan.sha[:8]} (until {until})."]
    body: list[str] = []
    truncated = False
    size = sum(len(x) + 1 for x in head + tail) + 300
    for o in plan.objects:
        if o["status"] != "changed":
            continue
        section = ["", f"**{o['key']}**:"]
        for c in o["changes"][:MAX_FIELDS_SHOWN]:
            section.append(f"- `{_code(c['path'])}`: `{show(c['before'])}` → `{show(c['after'])}`")
        if len(o["changes"]) > MAX_FIELDS_SHOWN:
            section.append(f"- … and {len(o['changes']) - MAX_FIELDS_SHOWN} more fields")
            truncated = True
        cost = sum(len(x) + 1 for x in section)
        if size + cost > limit:
            truncated = True
            body += ["", "… more changes than fit here."]
            break
        body += section
        size += cost
    if any(len(show(c["before"], 10_000)) > 120 or len(show(c["after"], 10_000)) > 120
           for o in plan.objects for c in o["changes"]):
        truncated = True
    # a created object's fields are not listed here: the full plan shows them
    if any(o["status"] == "created" for o in plan.objects):
        truncated = True
    if truncated or full_link or link_error:
        if full_link:
            tail.append(f"Full plan: {full_link}")
        elif link_error:
            tail.append(f"The full plan could not be stored as a snippet: {_code(link_error, 200)}")
    return "\n".join(head + body + tail), truncated


def full_plan(plan: Plan) -> str:
    """Every object, every field change uncut, and each object as it will be applied."""
    lines = [f"# Plan {plan.id} for {plan.env}: {plan.ref} at {plan.sha}",
             f"planned by @{plan.planned_by}; rendered objects digest sha256:{plan.digest}",
             f"summary: {summary(plan)}", ""]
    for o in plan.objects:
        lines.append(f"## {o['key']} ({o['status']}) from {o['where']}")
        if o["detail"]:
            lines.append(o["detail"])
        for c in o["changes"]:
            lines.append(f"- {c['path']}: {show(c['before'], 100_000)} -> {show(c['after'], 100_000)}")
        obj = o["obj"]
        if o["kind"] == "Secret":
            obj = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
        lines += ["```yaml", yaml.safe_dump(obj, sort_keys=False).rstrip(), "```", ""]
    if plan.prune:
        lines += ["## Prune candidates (not deleted)", *[f"- {p}" for p in plan.prune]]
    return "\n".join(lines)


APPLY_ICONS = {"created": "✅ created", "configured": "✅ configured", "unchanged": "unchanged",
               "failed": "❌ failed", "not applied": "⏭️ not applied",
               "unconfirmed": "❓ not confirmed"}


def apply_reply(plan: Plan, result: dict[str, Any]) -> str:
    ok = result["outcome"] == "applied"
    lines = [f"{'✅' if ok else '❌'} apply of plan `{plan.id}` to `{plan.env}` "
             f"(`{_code(plan.ref, 80)}` at {plan.sha[:8]}): {result['headline']}", "",
             "| Object | Result | Confirmed by the API server |", "|---|---|---|"]
    for r in result["objects"]:
        lines.append(f"| {r['key']} | {APPLY_ICONS.get(r['status'], r['status'])} | "
                     f"{_code(r['detail'], 300).replace('|', '/')} |")
    for r in result.get("rollouts") or []:
        lines.append(f"- rollout of {r['key']}: {'✅' if r['state'] == 'done' else '❌'} "
                     f"{_code(r['message'], 300)}")
    return "\n".join(lines)
