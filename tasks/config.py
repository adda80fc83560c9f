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
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class EnvAccess(_Model):
    min_access: str = "developer"
    require_pipeline_success: bool = False
    require_mr_approval: bool = False
    respect_freeze_periods: bool = False
    deny_windows: tuple[DenyWindow, ...] = ()

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


class Labels(_Model):
    deploy: str = "deploy::{env}"
    rollback: str = "rollback::{env}"
    deploying: str = "deploying::{env}"
    deployed: str = "deployed::{env}"
    failed: str = "deploy-failed::{env}"

    def pattern(self, which: str) -> re.Pattern[str]:
        template = getattr(self, which)
        head, _, tail = template.partition("{env}")
        return re.compile("^" + re.escape(head) + r"([a-z0-9][a-z0-9_-]{0,40})" + re.escape(tail) + "$")

    def name(self, which: str, env: str) -> str:
        return getattr(self, which).replace("{env}", env)


DEFAULT_ACCESS = {
    "staging": EnvAccess(min_access="developer"),
    "production": EnvAccess(min_access="maintainer", require_pipeline_success=True,
                            respect_freeze_periods=True),
}


class AgentConfig(_Model):
    chatops: ChatOps = Field(default_factory=ChatOps)
    labels: Labels = Field(default_factory=Labels)
    access: dict[str, EnvAccess] = Field(default_factory=lambda: dict(DEFAULT_ACCESS))
    # Record each deploy as a GitLab deployment of the environment (Operate → Environments).
    gitlab_deployments: bool = False
    environments: dict[str, Any] = Field(default_factory=dict)

    def env_access(self, env: str) -> EnvAccess | None:
        return self.access.get(env)


def _lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """Map each key path in the YAML document to its (1-based) line."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out.update(_lines(value, path + (key.value,)))
            out[path + (key.value,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out.update(_lines(value, path + (i,)))
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
        from tasks.deploy.config import ConfigError as DeployConfigError, parse_environments

        try:
            parsed = parse_environments({"environments": envs}, str(path))
        except DeployConfigError as exc:
            line = lines.get(("environments",), 1)
            raise ConfigError(f"{path}:{line}: environments: {exc}") from None
        config = config.model_copy(update={"environments": parsed})
    return config
