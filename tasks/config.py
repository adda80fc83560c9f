"""The service's YAML configuration (DEVOPS_AGENT_CONFIG): ChatOps, labels, access gates, and the
deploy environments. Validated at start-up; every error names the file, line and field.

    chatops:
      prefix: /devops              # so `/devops deploy staging` never clashes with GitLab's own
      bot_username: devops-bot     # notes by this user are ignored (default: the token's user)
    labels:
      deploy: "deploy::{env}"      # also deploying, deployed, failed, rollback
    access:
      staging:    {min_access: developer}
      production: {min_access: maintainer, require_pipeline_success: true,
                   require_mr_approval: false, respect_freeze_periods: true,
                   deny_windows: [{start: "fri 15:00", end: "mon 08:00", timezone: "Europe/Berlin"}]}
    environments: {...}            # Kubernetes targets, see docs in the README
    pipeline_fixes: {threshold: 3, window_days: 1, kinds: [retry, timeout]}   # CI config MRs
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.incidents.config import IncidentsConfig
from tasks.settings import ConfigError

ACCESS_LEVELS = {"guest": 10, "planner": 15, "reporter": 20, "developer": 30, "maintainer": 40,
                 "owner": 50}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_CONFIG_BYTES = 1024 * 1024
_WHEN = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\s+([01]\d|2[0-3]):([0-5]\d)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DenyWindow(_Model):
    """A weekly window with no deploys, e.g. Friday 15:00 to Monday 08:00."""

    start: str
    end: str
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _when(cls, v: str) -> str:
        if not _WHEN.match(v.strip().lower()):
            raise ValueError("expected '<day> HH:MM', e.g. 'fri 15:00'")
        return v.strip().lower()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


SECURITY_JOBS = ("sast", "secret_detection", "dependency_scanning", "container_scanning")
SECURITY_STAGES = ("security", "sast", "scan")


class EnvAccess(_Model):
    """Who may deploy to an environment and the checklist a deploy must pass (each a gate)."""

    min_access: str = "developer"
    # All jobs of the pipeline that built the SHA succeeded (allowed-to-fail ones aside).
    require_pipeline_success: bool = False
    # The SHA's security jobs (by name, or in a security stage) ran and succeeded.
    require_security_scans: bool = False
    security_jobs: tuple[str, ...] = SECURITY_JOBS
    security_stages: tuple[str, ...] = SECURITY_STAGES
    # On a merge request: it is approved, from this project, for exactly the SHA deployed.
    # On an issue: this many `approve <env>` notes by others allowed to deploy here.
    require_mr_approval: bool = False
    approvals: int = Field(1, ge=1, le=10)
    respect_freeze_periods: bool = False
    deny_windows: tuple[DenyWindow, ...] = ()
    # The SHA was deployed and verified healthy on these environments first.
    requires: tuple[str, ...] = ()
    # A previous healthy deploy exists to roll back to.
    require_rollback_plan: bool = False
    # The environment has health checks or Prometheus checks configured.
    require_monitoring: bool = False
    # At most this many commits since the environment's last deploy (None: no limit).
    max_commits: int | None = Field(None, ge=1)

    @field_validator("min_access")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.lower() not in ACCESS_LEVELS:
            raise ValueError(f"expected one of {', '.join(ACCESS_LEVELS)}")
        return v.lower()

    @property
    def min_level(self) -> int:
        return ACCESS_LEVELS[self.min_access]


class ChatOps(_Model):
    prefix: str = "/devops"
    bot_username: str | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not re.fullmatch(r"/[a-z][a-z0-9_-]{0,30}", v):
            raise ValueError("expected a slash and a word, e.g. /devops")
        return v


# An issue carries at most one of these per environment: in progress, then the outcome of its
# last request (tasks/deploy/verdicts.py says which verdict ends with which).
STATUS_LABELS = ("deploying", "deployed", "failed", "rolled_back")


class Labels(_Model):
    """Label names. Trigger labels are removed as soon as they are seen; the status labels keep
    one scope per environment (`env::staging::deployed`: GitLab Premium's scope is everything
    before the last `::`), so on Premium they replace each other within one environment and
    never across environments, and on Free devops-agent removes the previous one itself."""

    deploy: str = "deploy::{env}"
    rollback: str = "rollback::{env}"
    deploying: str = "env::{env}::deploying"
    deployed: str = "env::{env}::deployed"
    failed: str = "env::{env}::deploy-failed"
    rolled_back: str = "env::{env}::rolled-back"

    @model_validator(mode="after")
    def _scopes(self) -> Labels:
        for which in (*STATUS_LABELS, "deploy", "rollback"):
            if "{env}" not in getattr(self, which):
                raise ValueError(f"labels.{which} must contain {{env}}")
        for which in STATUS_LABELS:
            template = getattr(self, which)
            scope = template.rpartition("::")[0]
            if "::" in template and "{env}" not in scope:
                # On Premium, `deployed::staging` and `deployed::production` share the scope
                # `deployed`: deploying production would remove staging's label.
                raise ValueError(f"labels.{which}: put {{env}} before the last `::` (e.g. "
                                 f"`env::{{env}}::{which}`), or GitLab Premium's scoped labels "
                                 "let one environment's status replace another's")
        return self

    def status_labels(self, env: str) -> list[str]:
        return [self.name(which, env) for which in STATUS_LABELS]

    def pattern(self, which: str) -> re.Pattern[str]:
        template = getattr(self, which)
        head, _, tail = template.partition("{env}")
        return re.compile("^" + re.escape(head) + r"([a-z0-9][a-z0-9_-]{0,40})" + re.escape(tail) + "$")

    def name(self, which: str, env: str) -> str:
        return getattr(self, which).replace("{env}", env)


# No Friday afternoons: production's default deny window, changeable in `access.production`.
FRIDAY_AFTERNOON = DenyWindow(start="fri 15:00", end="mon 08:00", timezone="UTC")
DEFAULT_ACCESS = {
    "staging": EnvAccess(min_access="developer"),
    "production": EnvAccess(min_access="maintainer", require_pipeline_success=True,
                            require_security_scans=True, respect_freeze_periods=True,
                            deny_windows=(FRIDAY_AFTERNOON,), requires=("staging",),
                            require_rollback_plan=True, require_monitoring=True),
}


# Categories a `.gitlab-ci.yml` change may answer: the infrastructure ones. Code failures are
# never among them (a `retry:` would hide a real failure or a flake).
PIPELINE_FIX_CATEGORIES = ("runner_system_failure", "network_error", "job_timeout")
PIPELINE_FIX_KINDS = ("retry", "timeout")


class PipelineFixes(_Model):
    """Merge requests that change `.gitlab-ci.yml` when one job keeps failing for one
    infrastructure reason (tasks/pipeline_fix): `retry:` for runner and platform failures,
    a raised `timeout:` for jobs that run out of time."""

    enabled: bool = True
    # `threshold` failures of one job for one reason within `window_days` ask for a change.
    threshold: int = Field(3, ge=2, le=100)
    window_days: int = Field(1, ge=1, le=30)
    kinds: tuple[str, ...] = PIPELINE_FIX_KINDS
    categories: tuple[str, ...] = PIPELINE_FIX_CATEGORIES
    # GitLab's own cap for retry:max is 2.
    retry_max: int = Field(2, ge=1, le=2)
    # A timeout is raised by `timeout_step` at a time and never above `timeout_max`.
    timeout_step: str = "30m"
    timeout_max: str = "3h"
    # Raise a timeout only when passing runs of the job took at least this share of its limit:
    # a job that usually takes 5 minutes and then hits a 1 h limit hangs, and more time would
    # not help.
    near_limit: float = Field(0.8, gt=0, le=1)
    # A merge request someone closed is not proposed again for this long.
    closed_cooldown_days: int = Field(30, ge=1, le=365)
    labels: tuple[str, ...] = ("devops-agent", "ci-config")

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [k for k in v if k not in PIPELINE_FIX_KINDS]
        if unknown:
            raise ValueError(f"unknown kind(s) {', '.join(unknown)}; expected "
                             f"{', '.join(PIPELINE_FIX_KINDS)}")
        return v

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in v if c not in PIPELINE_FIX_CATEGORIES]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: only infrastructure categories "
                             f"({', '.join(PIPELINE_FIX_CATEGORIES)}) can be fixed in the CI "
                             "configuration; code failures never are")
        return v

    @field_validator("timeout_step", "timeout_max")
    @classmethod
    def _duration(cls, v: str) -> str:
        from tasks.pipeline_fix.durations import MAX_TIMEOUT, parse_duration

        seconds = parse_duration(v)
        if seconds is None or seconds <= 0:
            raise ValueError("expected a duration such as '30m' or '1h 30m'")
        if seconds >= MAX_TIMEOUT:
            raise ValueError("GitLab's job timeout must stay under one month")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> PipelineFixes:
        from tasks.pipeline_fix.durations import parse_duration

        if (parse_duration(self.timeout_step) or 0) > (parse_duration(self.timeout_max) or 0):
            raise ValueError("timeout_step is larger than timeout_max")
        return self

    @property
    def window_seconds(self) -> int:
        return self.window_days * 86400


class AgentConfig(_Model):
    chatops: ChatOps = Field(default_factory=ChatOps)
    labels: Labels = Field(default_factory=Labels)
    access: dict[str, EnvAccess] = Field(default_factory=lambda: dict(DEFAULT_ACCESS))
    # Record each deploy as a GitLab deployment of the environment (Operate → Environments).
    gitlab_deployments: bool = False
    environments: dict[str, Any] = Field(default_factory=dict)
    pipeline_fixes: PipelineFixes = Field(default_factory=PipelineFixes)
    # Alertmanager alerts → incident issues (tasks/incidents/config.py)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)

    def env_access(self, env: str) -> EnvAccess | None:
        return self.access.get(env)


def _lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """Map each key path in the YAML document to its (1-based) line."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out.update(_lines(value, (*path, key.value)))
            out[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out.update(_lines(value, (*path, i)))
    return out


def load_config(path: Path | None) -> AgentConfig:
    """The defaults when `path` is None; else the file, validated, or ConfigError."""
    if path is None:
        return AgentConfig()
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        node = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
        data = yaml.safe_load(raw) if node is not None else {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping")
    lines = _lines(node) if node is not None else {}
    envs = data.pop("environments", None) or {}
    try:
        config = AgentConfig(**data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), 1)
            problems.append(f"{path}:{line}: {'.'.join(map(str, loc))}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems)) from None
    if envs:
        from tasks.deploy.config import ConfigError as DeployConfigError
        from tasks.deploy.config import parse_environments

        try:
            parsed = parse_environments({"environments": envs}, str(path))
        except DeployConfigError as exc:
            line = lines.get(("environments",), 1)
            raise ConfigError(f"{path}:{line}: environments: {exc}") from None
        config = config.model_copy(update={"environments": parsed})
        wrong = [(name, env.alerts.min_severity) for name, env in parsed.items()
                 if config.incidents.severity(env.alerts.min_severity) == "unknown"]
        if wrong:
            line = lines.get(("environments",), 1)
            raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(
                f"{path}:{line}: environments.{name}.alerts.min_severity: {level!r} is not one "
                f"of incidents.severity_levels ({', '.join(config.incidents.severity_levels)})"
                for name, level in wrong))
    return config
