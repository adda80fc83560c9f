"""The words of a record's end: what the verdict says when it succeeded or was rolled back, and
the post-mortem issue filed after an automatic rollback."""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.config.environments import EnvironmentConfig
from tasks.deploy.model import DeployRecord


def success_text(rec: DeployRecord, cfg: EnvironmentConfig) -> str:
    """The verdict's words when a deploy succeeded."""
    if rec.strategy == "blue_green":
        return (f"{rec.image} is live on {rec.data.get('idle')}; {rec.data.get('live')} kept with "
                f"{rec.data.get('previous_image')} for instant rollback")
    if rec.strategy == "canary":
        return f"{rec.image} promoted to 100% of {cfg.deployment}"
    return f"{rec.image} rolled out to {cfg.deployment} (revision {rec.data.get('new_revision', '?')})"


def rolled_back_text(rec: DeployRecord) -> str:
    """The verdict's words when a deploy was rolled back, or a rollback is done."""
    restored = rec.data.get("restored") or {}
    back_to = restored.get("image") or rec.data.get("previous_image") or "the previous version"
    if rec.kind == "rollback":
        where = (f" (revision {restored['revision']})" if restored.get("revision") else
                 f" on {restored['color']}" if restored.get("color") else "")
        return f"{rec.env} runs {back_to} again{where}"
    cause = rec.abort_requested or rec.data.get("failure", "")
    return f"{rec.image} rolled back, {rec.env} runs {back_to}: {cause}"


def postmortem(rec: DeployRecord) -> tuple[str, str]:
    """(title, body) of the post-mortem after an automatic rollback."""
    def ts(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")

    title = f"Post-mortem: {rec.env} deploy of {rec.image} rolled back automatically"
    lines = [
        f"## {title}",
        "",
        f"- **Deploy:** `{rec.id}` ({rec.strategy}), requested by {rec.requested_by}"
        + (f" from `{rec.ref}`" if rec.ref else "") + (f" at `{rec.sha[:12]}`" if rec.sha else ""),
        f"- **What was deployed:** `{rec.image}`",
        f"- **What ran before:** `{rec.data.get('previous_image', '?')}`"
        + (f" (revision {rec.data['previous_revision']})" if rec.data.get("previous_revision") else ""),
        f"- **What failed:** {rec.data.get('failure', rec.reason)}",
        f"- **Rolled back at:** {ts(rec.timeline[-1][0]) if rec.timeline else '?'} UTC",
        "",
        "### Timeline (UTC)",
        "",
        *[f"- {ts(t)} {text}" for t, text in rec.timeline],
        "",
        *reflection_section(),
    ]
    return title, "\n".join(lines)


# What every post-mortem asks the team, after a deploy's automatic rollback and after an
# alert's (tasks/incidents): one list, so both ask the same.
REFLECTION_QUESTIONS = ("What went wrong?", "How do we prevent it?")


def reflection_section() -> list[str]:
    """The post-mortem's questions, each a heading with room for the team's answer."""
    lines: list[str] = []
    for question in REFLECTION_QUESTIONS:
        if lines:
            lines.append("")
        lines += [f"### {question}", "", "_To be filled in by the team._"]
    return lines
