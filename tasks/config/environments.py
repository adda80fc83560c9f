"""Deploy environments: typed configuration, loaded from the service's YAML `environments:` map.

Every time constant lives here (with production defaults) so tests can shrink them to
fractions of a second.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.config.errors import ConfigError
from tasks.config.matchers import parse_matcher
from tasks.deploy.kube import insecure_host

__all__ = ["AutoDeploy", "BlueGreenStrategy", "CanaryStrategy", "ConfigError", "Credentials",
           "EnvironmentConfig", "HealthCheck", "PrometheusCheck", "RollingStrategy",
           "StrategyConfig", "Timings", "Verification", "fill", "parse_environments"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label (namespaces, names)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credentials(_Model):
    """How to reach the cluster.

    in_cluster: the worker pod's service account. kubeconfig: a file path (a mounted secret),
    optionally a context. host: an explicit API server URL (tests, kubectl proxy), with a
    bearer token from `token_file` and the server's CA bundle from `ca_file` (a private CA)."""

    mode: Literal["in_cluster", "kubeconfig", "host"] = "in_cluster"
    kubeconfig: str | None = None
    context: str | None = None
    host: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    verify_ssl: bool = True
    request_timeout: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> Credentials:
        if self.mode == "kubeconfig" and not self.kubeconfig:
            raise ValueError("mode kubeconfig needs `kubeconfig: <path>`")
        if self.mode == "host" and not self.host:
            raise ValueError("mode host needs `host: <url>`")
        if self.ca_file and self.mode != "host":
            raise ValueError(f"ca_file is for mode host; mode {self.mode} brings its own CA")
        if self.ca_file and not self.verify_ssl:
            raise ValueError("ca_file with verify_ssl: false: the CA would never be checked; "
                             "drop one of them")
        return self


class HealthCheck(_Model):
    """An HTTP probe. `url` may use {color}, {track}, {deployment}, {namespace}, {sha}."""

    url: str
    expect_status: int = Field(200, ge=100, le=599)
    successes: int = Field(3, ge=1, description="consecutive successes needed to pass")
    failures: int = Field(3, ge=1, description="consecutive failures that fail the check")
    timeout: float = Field(2.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        _check_placeholders(v)
        return v


class PrometheusCheck(_Model):
    """A Prometheus instant query compared with a threshold.

    Passes when `value <op> threshold` holds (e.g. error rate `<` 0.05). With `sample_query`
    (e.g. the request count over the same window), fewer than `min_samples` samples make the
    result inconclusive instead of failed, so one error at low traffic does not abort."""

    name: str
    url: str = Field(description="Prometheus base URL; the check calls GET {url}/api/v1/query")
    query: str
    threshold: float
    op: Literal["<", "<=", ">", ">="] = "<"
    sample_query: str | None = None
    min_samples: float = Field(0, ge=0)
    timeout: float = Field(5.0, gt=0)

    # queries are not checked for placeholders: PromQL is full of braces; see `fill`


class Verification(_Model):
    """When and how long to verify after each step."""

    interval: float = Field(10.0, gt=0, description="seconds between probe rounds")
    timeout: float = Field(300.0, gt=0, description="give up (fail) if checks cannot pass by then")


class RollingStrategy(_Model):
    type: Literal["rolling"] = "rolling"
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _intstr(cls, v: int | str) -> int | str:
        if (isinstance(v, int) and v < 0) or (isinstance(v, str) and not re.fullmatch(r"\d{1,3}%", v)):
            raise ValueError("must be a non-negative integer or a percentage like '25%'")
        return v


class BlueGreenStrategy(_Model):
    type: Literal["blue_green"] = "blue_green"
    service: str = Field(description="the Service whose selector picks the live colour")
    color_label: str = "color"
    colors: tuple[str, str] = ("blue", "green")
    deployment_pattern: str = Field("{deployment}-{color}", description="colour Deployment names")
    switch_traffic: Literal["auto", "manual"] = "auto"


class CanaryStrategy(_Model):
    type: Literal["canary"] = "canary"
    canary_deployment: str = Field("{deployment}-canary", description="name of the canary Deployment")
    track_label: str = "track"
    initial_weight: int = Field(10, gt=0, le=100)
    step_weight: int = Field(20, gt=0, le=100)
    interval: float = Field(300.0, gt=0, description="seconds of analysis at each weight")


StrategyConfig = Annotated[RollingStrategy | BlueGreenStrategy | CanaryStrategy,
                           Field(discriminator="type")]


class Timings(_Model):
    poll_interval: float = Field(5.0, gt=0, description="seconds between rollout status reads")
    rollout_timeout: float = Field(600.0, gt=0, description="a rollout not done by then fails")
    api_error_retries: int = Field(5, ge=0, description="transient API errors tolerated in a row")


class AutoDeploy(_Model):
    """development: `feature_branches`; staging: `default_branch` (every successful pipeline);
    production: `manual` (only an explicit command by someone with `min_access_level`).
    Named `trigger`, not `on`: YAML 1.1 (PyYAML) reads a bare `on` key as the boolean true."""

    trigger: Literal["feature_branches", "default_branch", "manual"] = "manual"
    min_access_level: int = Field(40, ge=10, le=50, description="GitLab access level for commands")


class AlertRollback(_Model):
    """What an alert may do to this environment (tasks/incidents): with
    `auto_rollback_on_alert`, an alert that matches every `selector` matcher (Alertmanager's
    syntax: `alertname=~"High.*"`, `team="shop"`) at `min_severity` or above, firing within
    `incidents.rollback_window` after a deploy here, rolls that deploy back through the same
    service and gates as `/devops rollback`, once per incident."""

    auto_rollback_on_alert: bool = False
    # The project whose deploys run here (id or path), when the alert does not name one.
    project: str | None = None
    selector: tuple[str, ...] = ()
    min_severity: str = "critical"

    @field_validator("selector")
    @classmethod
    def _matchers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for text in v:
            parse_matcher(text)
        return v


class CustomKind(_Model):
    """A namespaced kind the manifests may hold beyond the built-in list (a CRD's kind)."""

    api_version: str = Field(pattern=r"^[a-z0-9.-]+/v[0-9a-z]+$")
    kind: str = Field(pattern=r"^[A-Z][A-Za-z0-9]{0,62}$")
    plural: str = Field(pattern=r"^[a-z][a-z0-9]{0,62}$")


class Manifests(_Model):
    """Kubernetes manifests in the repository, planned and applied from the thread
    (`plan <env>`, `apply <env>`; README, Infrastructure from the thread)."""

    path: str = Field(description="folder in the repository, e.g. deploy/k8s/staging")
    kustomize: bool = Field(False, description="render with `kubectl kustomize` instead of "
                                               "reading *.yaml/*.yml documents")
    # Every object gets `<label>: <environment>`; objects in the namespace carrying it that
    # the manifests no longer hold are listed as prune candidates (never deleted).
    label: str = Field("devops-agent.io/environment",
                       pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9_.-]{1,63}$")
    allowed_kinds: tuple[str, ...] | None = Field(
        None, description="kinds allowed (None: every built-in namespaced kind); "
                          "cluster-scoped kinds are never allowed")
    custom_kinds: tuple[CustomKind, ...] = ()
    plan_access: str = "developer"
    apply_access: str = "maintainer"
    plan_ttl: float = Field(3600.0, gt=0, description="seconds a plan can be applied")
    max_files: int = Field(50, ge=1, le=500)
    max_file_bytes: int = Field(256 * 1024, ge=1, le=4 * 1024 * 1024)
    max_total_bytes: int = Field(2 * 1024 * 1024, ge=1, le=16 * 1024 * 1024)
    max_objects: int = Field(100, ge=1, le=500)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        v = v.strip().strip("/")
        if not v or "\\" in v or any(part in ("", ".", "..") for part in v.split("/")):
            raise ValueError("must be a folder inside the repository, e.g. deploy/k8s/staging")
        return v

    @field_validator("plan_access", "apply_access")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.lower() not in ("guest", "reporter", "developer", "maintainer", "owner"):
            raise ValueError("expected one of guest, reporter, developer, maintainer, owner")
        return v.lower()


class EnvironmentConfig(_Model):
    name: str
    credentials: Credentials = Credentials()
    namespace: str
    deployment: str
    container: str
    image: str = Field(description="image template, e.g. registry.example.com/app:{sha}")
    strategy: StrategyConfig = RollingStrategy()
    health_checks: list[HealthCheck] = []
    prometheus: list[PrometheusCheck] = []
    verification: Verification = Verification()
    timings: Timings = Timings()
    auto_deploy: AutoDeploy = AutoDeploy()
    manifests: Manifests | None = None
    alerts: AlertRollback = AlertRollback()

    @field_validator("namespace", "deployment", "container")
    @classmethod
    def _k8s_name(cls, v: str) -> str:
        if not _NAME.match(v) or len(v) > 63:
            raise ValueError(f"{v!r} is not a valid Kubernetes name (RFC 1123 label)")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        fields = {f for _, f, _, _ in string.Formatter().parse(v) if f}
        if not fields <= {"sha", "short_sha", "ref", "tag"}:
            raise ValueError(f"unknown placeholder(s) {sorted(fields - {'sha', 'short_sha', 'ref', 'tag'})}; "
                             "use {sha}, {short_sha}, {ref} or {tag}")
        return v

    def image_for(self, sha: str, ref: str = "", tag: str = "") -> str:
        return self.image.format(sha=sha, short_sha=sha[:8], ref=ref, tag=tag or sha)

    def auto_deploys(self, ref: str, default_branch: str) -> bool:
        """Whether a successful pipeline on `ref` deploys here without a command."""
        if self.auto_deploy.trigger == "feature_branches":
            return ref != default_branch
        if self.auto_deploy.trigger == "default_branch":
            return ref == default_branch
        return False


_KNOWN = ("color", "track", "deployment", "namespace", "sha", "env")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(_KNOWN) + r")\}")


def fill(template: str, values: dict[str, str]) -> str:
    """Replace only the known {placeholders}: PromQL's own braces (`{job="x"}`) stay as they are."""
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "")), template)


def _check_placeholders(text: str) -> None:
    unknown = {m for m in re.findall(r"\{(\w+)\}", text) if m not in _KNOWN}
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; known: {list(_KNOWN)}")


def parse_environments(data: dict, source: str,
                       line: Callable[[Sequence[object]], int] | None = None
                       ) -> dict[str, EnvironmentConfig]:
    """`{"environments": {name: {...}}}` (or the inner map) -> configs; ConfigError names the field.

    With `line` (a key path -> its line in `source`, tasks/config/yamlfile.py), each problem
    starts `source:line:`; without, `source:`."""
    def where(loc: Sequence[object]) -> str:
        return f"{source}:{line(loc)}:" if line is not None else f"{source}:"

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with `environments:`")
    envs = data.get("environments", data)
    if not isinstance(envs, dict) or not envs:
        raise ConfigError(f"{source}: `environments` must be a non-empty mapping of name -> settings")
    out: dict[str, EnvironmentConfig] = {}
    problems: list[str] = []
    for name, raw in envs.items():
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{where(['environments', name])} environments.{name}: invalid "
                            "environment name")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where(['environments', name])} environments.{name}: expected a mapping")
            continue
        try:
            out[name] = EnvironmentConfig.model_validate({**raw, "name": name})
        except ValidationError as e:
            for err in e.errors(include_url=False):
                parts = list(err["loc"])
                if len(parts) > 1 and parts[0] == "strategy" and \
                        parts[1] in ("rolling", "blue_green", "canary"):
                    del parts[1]  # the discriminated union's tag, not a field the user wrote
                loc = ".".join(str(p) for p in parts) or "(root)"
                problems.append(f"{where(['environments', name, *parts])} environments.{name}.{loc}: "
                                f"{err['msg']}")
    if problems:
        raise ConfigError("invalid deploy configuration:\n  " + "\n  ".join(problems))
    for cfg in out.values():
        if cfg.credentials.mode == "host" and not cfg.credentials.verify_ssl:

            insecure_host(cfg.credentials.host or "")
    return out
