"""The `incidents:` section of DEVOPS_AGENT_CONFIG (tasks/config/agent.py holds it; the part that
differs per environment, `environments.<env>.alerts`, is in tasks/config/environments.py).

    incidents:
      project: acme/ops                 # where incident issues go (unset: alerts are ignored)
      default_project: acme/shop        # whose deploys an alert is about, when nothing says
      environment_label: devops_agent_env
      project_label: devops_agent_project
      namespace_label: namespace        # else namespace + deployment name the environment
      deployment_label: deployment
      severity_label: severity
      severity_levels: [info, warning, critical]     # lowest first
      severity_aliases: {page: critical, warn: warning}
      reopen_window: 1h                 # a re-fire within it edits (and reopens) the same issue
      close_on_resolve: true            # false: leave it open for the post-mortem
      rollback_window: 30m              # a deploy this long before the alert is suspected
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.gitlab.durations import parse_duration


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def duration_seconds(value: str | int) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    seconds = parse_duration(value)
    if seconds is None:
        raise ValueError("expected a duration such as '30m' or '1h', or a number of seconds")
    return seconds


class IncidentLabels(_Model):
    """Scoped labels: on GitLab Premium one per scope is kept; on Free devops-agent removes the
    other status label itself."""

    firing: str = "incident::firing"
    resolved: str = "incident::resolved"
    severity: str = "severity::{severity}"
    always: tuple[str, ...] = ("incident",)

    @field_validator("severity")
    @classmethod
    def _placeholder(cls, v: str) -> str:
        if "{severity}" not in v:
            raise ValueError("must contain {severity}")
        return v


class IncidentsConfig(_Model):
    project: str | None = None
    default_project: str | None = None
    environment_label: str = "devops_agent_env"
    project_label: str = "devops_agent_project"
    namespace_label: str = "namespace"
    deployment_label: str = "deployment"
    severity_label: str = "severity"
    severity_levels: tuple[str, ...] = ("info", "warning", "critical")
    severity_aliases: dict[str, str] = Field(default_factory=lambda: {
        "page": "critical", "error": "critical", "high": "critical", "warn": "warning",
        "medium": "warning", "low": "info", "none": "info"})
    reopen_window: str | int = "1h"
    close_on_resolve: bool = True
    rollback_window: str | int = "30m"
    labels: IncidentLabels = Field(default_factory=IncidentLabels)
    # The alert table shows at most this many alerts (the rest are counted).
    max_alerts_shown: int = Field(50, ge=1, le=500)

    @field_validator("reopen_window", "rollback_window")
    @classmethod
    def _duration(cls, v: str | int) -> str | int:
        if duration_seconds(v) < 0:
            raise ValueError("must not be negative")
        return v

    @field_validator("severity_levels")
    @classmethod
    def _levels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError("expected distinct severity names, lowest first")
        return tuple(x.lower() for x in v)

    @model_validator(mode="after")
    def _aliases(self) -> IncidentsConfig:
        unknown = sorted({t for t in self.severity_aliases.values()
                          if t.lower() not in self.severity_levels})
        if unknown:
            raise ValueError(f"severity_aliases name unknown level(s) {', '.join(unknown)}; "
                             f"levels: {', '.join(self.severity_levels)}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.project)

    @property
    def reopen_seconds(self) -> float:
        return duration_seconds(self.reopen_window)

    @property
    def rollback_seconds(self) -> float:
        return duration_seconds(self.rollback_window)

    def severity(self, raw: str | None) -> str:
        """The alert's severity as one of `severity_levels`, or "unknown"."""
        v = (raw or "").strip().lower()
        v = {k.lower(): t for k, t in self.severity_aliases.items()}.get(v, v).lower()
        return v if v in self.severity_levels else "unknown"

    def rank(self, level: str) -> int:
        """Higher is more severe; -1 for unknown."""
        return self.severity_levels.index(level) if level in self.severity_levels else -1
