"""Every way a deploy, a rollback and a promote can end, and how each end is shown: one table.

A verdict is what the request's own reply says at the end (emoji and words) and which status
label its issue or merge request keeps. The GitLab reporter and ChatOps' replies take both from
`VERDICTS`, and the README's verdict table is generated from it (`markdown_table`; the test in
tests/deploy/test_verdicts.py fails when the two differ; `python -m tasks.deploy.verdicts
README.md` rewrites it).

A request is told the outcome of the record that carries it out: a rollback sent while a
deploy runs is carried out by that deploy's own undo, so the deploy ends `aborted` (told to
whoever asked for the deploy) and the rollback ends `succeeded` (told to whoever asked for the
rollback), each in its own reply.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.config.agent import Labels

START, END = "<!-- generated:verdicts -->", "<!-- /generated:verdicts -->"


@dataclass(frozen=True)
class Verdict:
    action: str         # deploy | rollback | promote
    outcome: str        # succeeded | rolled_back | aborted | failed | paused | refused
    emoji: str
    # The status label (a field of tasks.config.agent.Labels) the issue ends with, replacing the
    # environment's other status labels; None: labels stay as they were (nothing changed).
    label: str | None
    words: str          # formatted with env and by
    when: str           # for the README

    def text(self, env: str, detail: str = "", by: str = "") -> str:
        head = f"{self.emoji} {self.words.format(env=env, by=by or 'someone')}"
        return f"{head}: {detail}" if detail else head + "."


VERDICTS: tuple[Verdict, ...] = (
    Verdict("deploy", "succeeded", "✅", "deployed", "deploy of `{env}` done",
            "the new version rolled out and passed its checks"),
    Verdict("deploy", "rolled_back", "↩️", "failed",
            "deploy of `{env}` failed and was rolled back automatically",
            "a check failed, or the rollout did not complete, after the cluster changed; the "
            "previous version runs again and a post-mortem issue is filed"),
    Verdict("deploy", "aborted", "⏹️", "rolled_back", "deploy of `{env}` aborted by @{by} for a rollback",
            "a rollback was asked for while it ran: its changes were undone (the rollback's own "
            "reply has its verdict)"),
    Verdict("deploy", "failed", "❌", "failed", "deploy of `{env}` failed",
            "it failed before changing anything, or undoing it failed (then the environment "
            "needs a look)"),
    Verdict("deploy", "paused", "⏸️", "deploying", "deploy of `{env}` is waiting",
            "checks were inconclusive or the traffic switch is manual: `promote` or `rollback` "
            "decides; the environment stays locked"),
    Verdict("deploy", "refused", "🚫", None, "deploy of `{env}` refused",
            "nothing changed: a gate said no, another deploy holds the environment, or DRY_RUN"),
    Verdict("rollback", "succeeded", "✅", "rolled_back", "rollback of `{env}` done",
            "the previous (or named) revision runs again; sent during a deploy, that deploy was "
            "aborted and undone"),
    Verdict("rollback", "failed", "❌", "failed", "rollback of `{env}` failed",
            "the undo did not complete, or the deploy it was to abort finished first"),
    Verdict("rollback", "refused", "🚫", None, "rollback of `{env}` refused",
            "nothing changed: a gate said no, the revision does not exist, or it failed its "
            "checks here before and `--force` was not given"),
    Verdict("promote", "succeeded", "✅", "deployed", "promote of `{env}` done",
            "the paused deploy went on and succeeded"),
    Verdict("promote", "failed", "❌", "failed", "promote of `{env}` did not ship",
            "the deploy went on and then failed, was rolled back, or was aborted"),
    Verdict("promote", "paused", "⏸️", "deploying", "promote of `{env}`: the deploy is waiting again",
            "the deploy went on and paused again at its next decision"),
    Verdict("promote", "refused", "🚫", None, "promote of `{env}` refused",
            "nothing changed: nothing is waiting for a promote there, or a gate said no"),
)

_BY_KEY = {(v.action, v.outcome): v for v in VERDICTS}


def verdict(action: str, outcome: str) -> Verdict:
    return _BY_KEY[(action, outcome)]


def outcome(rec: Any, action: str | None = None) -> str | None:
    """The outcome of deploy record `rec` for a request of `action` carried out by it (the
    record's own kind by default); None while it runs."""
    action = action or rec.kind
    if rec.status == "paused":
        return "paused"
    if rec.status not in ("succeeded", "failed", "rolled_back"):
        return None
    if action == "deploy":
        if rec.status == "rolled_back":
            return "aborted" if rec.abort_requested else "rolled_back"
        return rec.status
    if action == "rollback":
        # its own record ends `rolled_back`; a deploy it aborted ends `rolled_back` too
        return "succeeded" if rec.status == "rolled_back" else "failed"
    return "succeeded" if rec.status == "succeeded" else "failed"


def aborted_by(rec: Any) -> str:
    """Who asked a deploy to abort (the first rollback waiting on it)."""
    for f in rec.followers:
        if f.get("action") == "rollback" and f.get("by"):
            return str(f["by"])
    text = rec.abort_requested or ""
    return text.split("requested by ", 1)[1].split(":", 1)[0] if "requested by " in text else ""


def detail(rec: Any, action: str | None = None) -> str:
    """The words after the verdict for a request of `action` carried out by `rec`."""
    action = action or rec.kind
    result = outcome(rec, action)
    if action == "deploy" and result == "aborted":
        return f"{rec.env} runs {_restored(rec)} again; {rec.image} was undone"
    if action == "rollback" and rec.kind == "deploy":
        what = f"deploy `{rec.id}` of {rec.image} by @{rec.requested_by}"
        if result == "succeeded":
            return f"{what} was aborted and undone; {rec.env} runs {_restored(rec)} again"
        if rec.status == "succeeded":
            return (f"{what} finished before it could be aborted, so nothing was rolled back; "
                    f"send the rollback again to undo it")
        return f"aborting {what} failed: {rec.reason}"
    return rec.reason


def _restored(rec: Any) -> str:
    restored = rec.data.get("restored") or {}
    return restored.get("image") or rec.data.get("previous_image") or "the previous version"


def markdown_table() -> str:
    labels = Labels()
    lines = ["| Request | Verdict | Reply | Label | When |", "|---|---|---|---|---|"]
    for v in VERDICTS:
        label = f"`{labels.name(v.label, '<env>')}`" if v.label else "unchanged"
        reply = v.text("<env>", by="<who>").rstrip(".")
        lines.append(f"| {v.action} | {v.outcome.replace('_', ' ')} | {reply} | {label} | {v.when} |")
    return "\n".join(lines)


def block() -> str:
    return f"{START}\n{markdown_table()}\n{END}"


def write(readme: Path) -> bool:
    """Rewrite the README's generated block; returns whether it changed."""
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = head + block() + tail
    if new == text:
        return False
    readme.write_text(new)
    return True


if __name__ == "__main__":  # pragma: no cover
    changed = write(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
    print("updated" if changed else "unchanged")
