"""The service's YAML configuration (DEVOPS_AGENT_CONFIG): ChatOps, labels, deploy environments
and their access gates, pipeline fixes. Validated at start-up; every error names the file, line
and field (`config.yaml:12: environments.staging.strategy.interval: Input should be greater
than 0`), and every problem of a file is reported at once.

    chatops:
      prefix: /devops              # so `/devops deploy staging` never clashes with GitLab's own
      bot_username: devops-bot     # notes by this user are ignored (default: the token's user)
    labels:
      deploy: "deploy::{env}"      # also deploying, deployed, failed, rollback
    environments:
      staging:
        access: {min_access: developer}
      production:
        access: {min_access: maintainer, require_pipeline_success: true,
                 require_mr_approval: false, respect_freeze_periods: true,
                 deny_windows: [{start: "fri 15:00", end: "mon 08:00", timezone: "Europe/Berlin"}]}
        namespace: shop            # a Kubernetes target (tasks/config/environments.py)
        ...
    pipeline_fixes: {threshold: 3, window_days: 1, kinds: [retry, timeout]}   # CI config MRs

An environment with only `access:` is one ChatOps knows (commands are gated) but nothing is
deployed to. The top-level `access: {<env>: {...}}` of earlier releases is still read, with a
warning naming the file and line; giving both for one environment is refused.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator

from tasks.config.base import StrictModel as _Model
from tasks.config.environments import EnvironmentConfig, parse_environments
from tasks.config.errors import ConfigError
from tasks.config.incidents import IncidentsConfig
from tasks.config.pipeline_fixes import PipelineFixes
from tasks.config.yamlfile import MAX_CONFIG_BYTES, Document, load

__all__ = ["MAX_CONFIG_BYTES", "AgentConfig", "ChatOps", "ConfigError", "DenyWindow", "EnvAccess",
           "Labels", "PipelineFixes", "load_config"]

log = logging.getLogger("devops_agent.config")

ACCESS_LEVELS = {"guest": 10, "planner": 15, "reporter": 20, "developer": 30, "maintainer": 40,
                 "owner": 50}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WHEN = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\s+([01]\d|2[0-3]):([0-5]\d)$")




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




class AgentConfig(_Model):
    chatops: ChatOps = Field(default_factory=ChatOps)
    labels: Labels = Field(default_factory=Labels)
    # Per environment, from `environments.<env>.access` (or the old top-level `access:`); the
    # defaults (staging, production) when the file gives access rules for no environment.
    access: dict[str, EnvAccess] = Field(default_factory=lambda: dict(DEFAULT_ACCESS))
    # Record each deploy as a GitLab deployment of the environment (Operate → Environments).
    gitlab_deployments: bool = False
    # The Kubernetes targets (EnvironmentConfig, checked by parse_environments in load_config):
    # environments with more than `access:`.
    environments: dict[str, Any] = Field(default_factory=dict)
    pipeline_fixes: PipelineFixes = Field(default_factory=PipelineFixes)
    # Alertmanager alerts → incident issues (tasks/config/incidents.py)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)

    def env_access(self, env: str) -> EnvAccess | None:
        return self.access.get(env)


def load_config(path: Path | str | None) -> AgentConfig:
    """The defaults when `path` is None; else the file, validated, or ConfigError listing every
    problem as `file:line: field: what is wrong`."""
    if path is None:
        return AgentConfig()
    doc = load(path, "DEVOPS_AGENT_CONFIG")
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        raise ConfigError(f"{doc.path}:1: the top level must be a mapping")
    data = dict(data)
    problems: list[str] = []
    envs = data.pop("environments", None)
    if envs is None:
        envs = {}
    elif not isinstance(envs, dict):
        problems.append(f"{doc.where(['environments'])}: expected a mapping of environment names")
        envs = {}
    access, moved = _merge_access(doc, data.pop("access", None), envs, problems)
    if access is not None:
        data["access"] = access
    config: AgentConfig | None = None
    try:
        config = AgentConfig(**{str(k): v for k, v in data.items()})
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = list(err["loc"])
            if len(loc) > 1 and loc[0] == "access" and str(loc[1]) in moved:
                loc = ["environments", loc[1], "access", *loc[2:]]  # where the user wrote it
            problems.append(f"{doc.where(loc)}: {err['msg']}")
    targets = {name: raw for name, raw in envs.items() if not (isinstance(raw, dict) and not raw)}
    parsed: dict[str, EnvironmentConfig] = {}
    if targets:
        try:
            parsed = parse_environments({"environments": targets}, doc.path, doc.line)
        except ConfigError as exc:
            problems += [x.strip() for x in str(exc).splitlines()[1:] if x.strip()] or [str(exc)]
    if config is not None:
        problems += [f"{doc.where(['environments', name, 'alerts', 'min_severity'])}: "
                     f"{env.alerts.min_severity!r} is not one of incidents.severity_levels "
                     f"({', '.join(config.incidents.severity_levels)})"
                     for name, env in parsed.items()
                     if config.incidents.severity(env.alerts.min_severity) == "unknown"]
    if problems or config is None:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return config.model_copy(update={"environments": parsed}) if parsed else config


def _merge_access(doc: Document, old: Any, envs: dict[Any, Any], problems: list[str]
                  ) -> tuple[dict[str, Any] | None, set[str]]:
    """Take `access:` out of each environment (mutating `envs`), merge the old top-level form,
    and return (access by environment or None for the defaults, environments given the new way)."""
    merged: dict[str, Any] = {}
    moved: set[str] = set()
    for name, raw in list(envs.items()):
        if isinstance(raw, dict) and "access" in raw:
            raw = dict(raw)
            merged[str(name)] = raw.pop("access")
            moved.add(str(name))
            envs[name] = raw
    if old is None:
        return (merged or None), moved
    if not isinstance(old, dict):
        problems.append(f"{doc.where(['access'])}: expected a mapping of environment names")
        return (merged or None), moved
    for name, rules in old.items():
        key = str(name)
        if key in moved:
            problems.append(f"{doc.where(['environments', key, 'access'])}: also given in the "
                            f"top-level access: (line {doc.line(['access', key])}); keep only "
                            f"environments.{key}.access")
            continue
        # Users have configurations in the old form: read it for one more release, loudly.
        log.warning("%s:%d: top-level `access:` is deprecated: move access.%s to "
                    "environments.%s.access (the old form is read for one more release)",
                    doc.path, doc.line(["access", key]), key, key,
                    extra={"file": doc.path, "line": doc.line(["access", key])})
        merged[key] = rules
    return merged, moved
