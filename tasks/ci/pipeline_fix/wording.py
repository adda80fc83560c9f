"""What a pipeline-fix merge request says: its title, the change in a few words, the
description's head (the change and its diff) and its evidence (the failures that asked for it).

The description's first sentence is read back (`what_from`) for the failure comment.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tasks.ci.pipeline_fix.edit import Change
from tasks.gitlab.durations import parse_duration, words

EVIDENCE = "<!-- devops-agent:evidence -->"
MAX_ROWS = 20


def _cell(text: Any, limit: int = 80) -> str:
    s = str(text if text is not None else "").replace("\n", " ").replace("|", "\\|")
    s = s.replace("`", "'")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def what(change: Change) -> str:
    """The change in a few words, for the title, the description and the comment."""
    if change.key == "retry":
        when = ", ".join(f"`{w}`" for w in change.after["when"])
        return f"`retry:` (at most {change.after['max']}, when: {when}) on `{change.job}`"
    before = parse_duration(change.before) if change.before is not None else None
    frm = f" from {words(before)}" if before else ""
    return f"`timeout: {change.after}` on `{change.job}` (raised{frm})"


def title(change: Change) -> str:
    if change.key == "retry":
        return f"CI: retry `{change.job}` on {', '.join(change.after['when'])}"
    return f"CI: raise the timeout of `{change.job}` to {change.after}"


def head(change: Change, path: str, notes: list[str]) -> str:
    if change.key == "retry":
        why = ("It keeps failing for reasons outside its script, so GitLab should run it "
               "again when the runner or GitLab fails, and never when the script fails: a "
               "failing test or build still fails the pipeline at once.")
    else:
        why = "It keeps running out of time while passing runs come close to its limit."
    inherited = f" (today it inherits `{change.key}:` from `{change.inherited}`)" \
        if change.inherited else ""
    diff = change.diff.replace("```", "'''")
    return "\n".join([f"This sets {what(change)} in `{path}`{inherited}. {why}", *notes, "",
                      "```diff", diff.rstrip("\n"), "```"])


def evidence(cfg: Any, web_url: str, job_name: str, found: dict[str, list[dict]],
              lint_ok: bool) -> str:
    rows = sorted((f for fs in found.values() for f in fs), key=lambda f: f.get("at", 0))
    days = cfg.window_days
    counts = " and ".join(f"{len(fs)} times with `{r}`" for r, fs in found.items())
    lines = [EVIDENCE, "### Why", "",
             f"`{job_name}` failed {counts} in the last {days} day{'s' if days != 1 else ''} "
             f"(the threshold: {cfg.threshold} failures of one job for one reason within "
             f"{days} day{'s' if days != 1 else ''}, `pipeline_fixes` in devops-agent's "
             "configuration).", "",
             "| When (UTC) | Pipeline | Job | Ref | Failure reason | Category | Rule |",
             "|---|---|---|---|---|---|---|"]
    for f in rows[-MAX_ROWS:]:
        when = datetime.fromtimestamp(float(f.get("at", 0)), UTC).strftime(
            "%Y-%m-%d %H:%M")
        pipeline = f"[#{f.get('pipeline')}]({web_url}/-/pipelines/{f.get('pipeline')})"
        job = f"[#{f.get('job')}]({web_url}/-/jobs/{f.get('job')})"
        lines.append(f"| {when} | {pipeline} | {job} | `{_cell(f.get('ref'), 60)}` | "
                     f"`{_cell(f.get('failure_reason'), 40)}` | {_cell(f.get('category'), 30)} "
                     f"| `{_cell(f.get('rule'), 40)}` |")
    if len(rows) > MAX_ROWS:
        lines.append(f"\n{len(rows) - MAX_ROWS} earlier failure(s) not shown.")
    lines += ["", "GitLab's CI lint accepted the changed configuration before this merge request "
                  "was opened." if lint_ok else "", "",
              f"Not wanted? Close this merge request: devops-agent will not propose it again "
              f"for {cfg.closed_cooldown_days} days. It updates this description when the job "
              "fails again."]
    return "\n".join(line for line in lines if line is not None)


def what_from(mr: dict) -> str:
    """The change an open merge request makes, from its description's first sentence."""
    m = re.search(r"This sets (.+?) in `", str(mr.get("description") or ""))
    return m.group(1) if m else f"the change in its title ({_cell(mr.get('title'), 80)})"
