"""Typed settings, read once from the environment at start-up (pydantic-settings).

Every setting is one environment variable (warehouse's habit); secrets (and REDIS_URL, which
may carry a password) may also come from a file, `<NAME>_FILE`, so they never need to appear
on a command line. A bad value stops start-up with a message that names the variable and what
was wrong, never a secret's value. `devops-agent config check` prints what was read and from
where (tasks/cli/config.py).

This module is over 350 lines on purpose: it is the one list of every setting, one field each,
which a reader wants in one place. How text becomes a value (converters.py), where values come
from (sources.py) and the secrets' own types and files (secrets.py) live beside it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    PrivateAttr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tasks.config.converters import (
    Csv,
    Flag,
    NonNegativeFloat,
    NonNegativeInt,
    OptionalSecret,
    Port,
    PositiveFloat,
    PositiveInt,
    _alertmanager_tokens,
    _basic_auth,
    _choice,
    _http_url,
    _log_level,
    _memory,
    _positive_float,
    _positive_int,
    _redis_url,
    _signing_key,
    _webhook_secrets,
)
from tasks.config.errors import ConfigError
from tasks.config.secrets import (
    MASK,
    Secret,
    SecretBinding,
    binding_matches,
    load_secrets_file,
    mask_url,
    signing_key_bytes,
    signing_key_forms,
    url_password,
)
from tasks.config.sources import (
    EnvironSource,
    _meta,
    _SecretsFile,
    _short,
    _Unusable,
    var,
)

__all__ = ["MB", "ConfigError", "Secret", "SecretBinding", "ServerLimits", "Settings",
           "binding_matches", "describe_settings", "load_secrets_file", "load_settings",
           "server_limits", "signing_key_bytes", "signing_key_forms"]

MB = 1024 * 1024








# --- converters: each takes the environment's text or an already typed value (Settings(...)
# built in code), so one model serves both; messages say what is expected, not the value.



















































# load_settings hands its source (and so its environment) to Settings() through this.
_SOURCE: ContextVar[EnvironSource | None] = ContextVar("settings_source", default=None)


class Settings(BaseSettings):
    """Every setting of the service. `Settings(field=...)` in code takes typed values (and reads
    the process environment for the rest); start-up goes through load_settings."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=False)

    webhook_secrets: Annotated[tuple[Secret, ...], BeforeValidator(_webhook_secrets)] = var(
        "WEBHOOK_SECRET", (), secret=True)
    webhook_signing_key: Annotated[Secret | None, BeforeValidator(_signing_key)] = var(
        "WEBHOOK_SIGNING_KEY", secret=True)
    # WEBHOOK_SECRETS_FILE: secrets that are valid only for the projects their pattern names
    webhook_bindings: tuple[SecretBinding, ...] = ()
    webhook_secrets_file: Path | None = var("WEBHOOK_SECRETS_FILE")
    # The receiver's HTTP server (webhooks/worker.py): how long a client may take to send the
    # request head and the body, and how many request bytes one web worker buffers at most.
    header_timeout_seconds: PositiveFloat = var("HEADER_TIMEOUT_SECONDS", 5.0)
    body_timeout_seconds: PositiveFloat = var("BODY_TIMEOUT_SECONDS", 10.0)
    max_buffered_bytes: PositiveInt | None = var("MAX_BUFFERED_BYTES")  # None: max(64 MB, 2 x body)
    redis_url: Annotated[str | None, BeforeValidator(_redis_url)] = var(
        "REDIS_URL", file=True, masked=True)
    data_dir: Path = var("DATA_DIR", Path("devops-agent-data"))
    max_body_bytes: PositiveInt = var("MAX_BODY_BYTES", 25 * MB)
    dedup_ttl_seconds: PositiveInt = var("DEDUP_TTL_SECONDS", 24 * 3600)
    # How long an item of work may sit queued with its message lost (no worker holding its
    # lease, the queue drained) before the engine sends it again (tasks/engine/schedule.py).
    redeliver_after_seconds: PositiveFloat = var("REDELIVER_AFTER_SECONDS", 15.0)
    task_lease_seconds: PositiveFloat = var("TASK_LEASE_SECONDS", 30.0)
    # kombu's own redelivery of unacknowledged messages: a backstop, above the longest task.
    visibility_timeout_seconds: PositiveInt = var("VISIBILITY_TIMEOUT_SECONDS", 300)
    inbox_retention_seconds: PositiveInt = var("INBOX_RETENTION_SECONDS", 7 * 24 * 3600)
    # Bodies are the bulk of the inbox: kept this long after their delivery finished.
    body_retention_seconds: PositiveInt = var("BODY_RETENTION_SECONDS", 24 * 3600)
    # The reconcile pass (tasks/worker/reconcile.py): how often, and how far back at most.
    reconcile_interval_seconds: NonNegativeFloat = var("RECONCILE_INTERVAL_SECONDS", 300.0)
    reconcile_lookback_seconds: PositiveFloat = var("RECONCILE_LOOKBACK_SECONDS", 24 * 3600.0)
    task_queue: str = var("TASK_QUEUE", "devops-agent")
    log_level: Annotated[str, BeforeValidator(_log_level)] = var("LOG_LEVEL", "INFO")
    sentry_dsn: OptionalSecret = var("SENTRY_DSN", secret=True)
    gitlab_url: Annotated[str | None, BeforeValidator(_http_url)] = var("GITLAB_URL")
    gitlab_token: OptionalSecret = var("GITLAB_TOKEN", secret=True)
    # Per HTTP request to GitLab; a write that times out is resolved by reading, not re-sent.
    gitlab_timeout_seconds: PositiveFloat = var("GITLAB_TIMEOUT_SECONDS", 10.0)
    gitlab_projects: Csv = var("GITLAB_PROJECTS", ())
    dry_run: Flag = var("DRY_RUN", False)
    rules_file: Path | None = var("RULES_FILE")
    config_file: Path | None = var("DEVOPS_AGENT_CONFIG")
    bot_username: str | None = var("BOT_USERNAME")
    handlers: Csv = var("HANDLERS", ())
    extra_handler_modules: Csv = var("EXTRA_HANDLER_MODULES", ())
    audit_token: OptionalSecret = var("AUDIT_TOKEN", secret=True)
    # The Alertmanager receiver (POST /webhooks/alertmanager): Bearer tokens (several while
    # rotating) and/or one `user:password` for basic auth; refused while neither is set.
    alertmanager_tokens: Annotated[tuple[Secret, ...], BeforeValidator(_alertmanager_tokens)] = var(
        "ALERTMANAGER_TOKEN", (), secret=True)
    alertmanager_basic_auth: Annotated[Secret | None, BeforeValidator(_basic_auth)] = var(
        "ALERTMANAGER_BASIC_AUTH", secret=True)
    alertmanager_max_body_bytes: PositiveInt = var("ALERTMANAGER_MAX_BODY_BYTES", 1 * MB)
    # Reacting to failures
    retry_budget: NonNegativeInt = var("RETRY_BUDGET", 2)  # GitLab's own `retry:` cap per job
    # more failed jobs than this in one pipeline: an outage
    outage_job_threshold: PositiveInt = var("OUTAGE_JOB_THRESHOLD", 5)
    # a rule failing in more projects than this within the window...
    breaker_projects: PositiveInt = var("BREAKER_PROJECTS", 3)
    # ...stops being retried and opens one incident issue
    breaker_window_seconds: PositiveInt = var("BREAKER_WINDOW_SECONDS", 600)
    incident_project: str | None = var("INCIDENT_PROJECT")
    label_failed: str = var("LABEL_FAILED", "ci::failed")
    label_passed: str = var("LABEL_PASSED", "ci::passed")
    # Not a scoped label (one colon): GitLab keeps only one label per `scope::`, and a pipeline
    # can fail in several categories at once; `ci::failed`/`ci::passed` are scoped on purpose.
    label_category_prefix: str = var("LABEL_CATEGORY_PREFIX", "ci-failure:")
    # Not in the `ci::` scope of LABEL_FAILED/LABEL_PASSED: on Premium, GitLab keeps one label
    # per scope, so an issue given both would silently lose one.
    fix_labels: Csv = var("FIX_LABELS", ("ci-fix-needed",))
    fix_queue: str | None = var("FIX_QUEUE")
    max_log_bytes: PositiveInt = var("MAX_LOG_BYTES", 8 * MB)
    # Processes (`serve`, `worker`, gunicorn_conf). HOST unset: `serve` listens on 127.0.0.1,
    # gunicorn (a container's entry point) on 0.0.0.0.
    host: str | None = var("HOST")
    port: Port = var("PORT", 8080)
    web_concurrency: PositiveInt = var("WEB_CONCURRENCY", 2)
    worker_connections: PositiveInt = var("WORKER_CONNECTIONS", 1000)
    worker_concurrency: PositiveInt = var("WORKER_CONCURRENCY", 2)
    worker_pool: Annotated[Literal["prefork", "threads", "solo"],
                           _choice("prefork", "threads", "solo")] = var("WORKER_POOL", "prefork")
    worker_metrics_port: Port | None = var("WORKER_METRICS_PORT")
    worker_metrics_host: str = var("WORKER_METRICS_HOST", "0.0.0.0")
    # The embedded redis-server (tasks/platform/redis_server.py).
    redis_maxmemory: Annotated[str, BeforeValidator(_memory)] = var("REDIS_MAXMEMORY", "1gb")
    # everysec is refused: it can lose acknowledged writes when a process is killed.
    redis_appendfsync: Annotated[Literal["no", "always"], _choice("no", "always")] = var(
        "REDIS_APPENDFSYNC", "no")
    # Compiled Hyperscan databases: None (unset) is $XDG_CACHE_HOME/devops-agent, "" is off.
    cache_dir: str | None = var("DEVOPS_AGENT_CACHE_DIR", keep_empty=True)

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No dotenv and no secrets_dir (see EnvironSource); values given in code come first.
        return init_settings, _SOURCE.get() or EnvironSource(settings_cls)

    @field_validator("*", mode="before")
    @classmethod
    def _readable(cls, v: Any) -> Any:
        if isinstance(v, _Unusable):
            raise ValueError(v.message)
        return v

    @field_validator("webhook_bindings", mode="before")
    @classmethod
    def _bindings(cls, v: Any) -> Any:
        if isinstance(v, _SecretsFile):
            return tuple(b for b in load_secrets_file(v.path) if b.secrets)
        return v

    @model_validator(mode="after")
    def _buffer_holds_a_body(self) -> Settings:
        if self.max_buffered_bytes is not None and self.max_buffered_bytes < self.max_body_bytes:
            raise ValueError("MAX_BUFFERED_BYTES: must be at least MAX_BODY_BYTES (one whole body)")
        return self

    @field_serializer("redis_url")
    def _masked_url(self, url: str | None) -> str | None:
        return mask_url(url) if url else url

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "redis_url" and isinstance(value, str) else value)

    @property
    def origins(self) -> Mapping[str, str]:
        """Where each field's value came from: "environment", "file <path>"; absent: default."""
        return self._origins

    def secret_values(self) -> list[str]:
        """Every configured secret in every form it could appear in, for log and Sentry
        scrubbing: the values, and the signing key also as its base64 text, the decoded key's
        hex and its bytes repr (what a traceback or a `%r` would show)."""
        out = [s.value for s in self.webhook_secrets]
        out += [s.value for b in self.webhook_bindings for s in b.secrets]
        for s in (self.gitlab_token, self.audit_token, self.sentry_dsn,
                  self.alertmanager_basic_auth, *self.alertmanager_tokens):
            if s is not None:
                out.append(s.value)
        if self.alertmanager_basic_auth is not None:  # as the Authorization header carries it
            out.append(base64.b64encode(self.alertmanager_basic_auth.value.encode()).decode())
        if self.webhook_signing_key is not None:
            out += signing_key_forms(self.webhook_signing_key.value)
        password = url_password(self.redis_url)
        if password:
            out.append(password)
        return sorted({v for v in out if v}, key=len, reverse=True)












def _field_var(name: str) -> str:
    if name == "webhook_bindings":
        return "WEBHOOK_SECRETS_FILE"
    meta = _meta(Settings.model_fields[name]) if name in Settings.model_fields else None
    return meta["env"] if meta else name


def _problems(exc: ValidationError, source: EnvironSource) -> list[str]:
    """pydantic's errors as `VAR='value': what is wrong` (no value for secrets and URLs that
    may hold a password). include_input=False: pydantic's own text would repeat the input."""
    out: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = err["msg"].removeprefix("Value error, ")
        loc = err["loc"]
        if not loc:  # a check across fields: the message names them
            out.append(msg)
            continue
        name = str(loc[0])
        if name == "webhook_bindings":  # the secrets file lists its own problems, one a line
            lines = msg.splitlines()
            out += [x[4:] for x in lines if x.startswith("  - ")] or lines
            continue
        var_name = _field_var(name)
        meta = _meta(Settings.model_fields[name]) or {}
        if msg.startswith((f"{var_name}_FILE", f"{var_name} and")):
            out.append(msg)
        elif name in source.raw and not meta.get("masked"):
            out.append(f"{var_name}={_short(source.raw[name])!r}: {msg}")
        else:
            out.append(f"{var_name}: {msg}")
    return out


def load_settings(env: Mapping[str, str] | None = None, *, require_secret: bool = True) -> Settings:
    """Build Settings from `env` (default os.environ); raise ConfigError naming every variable
    that is wrong, with what was wrong."""
    source = EnvironSource(Settings, env)
    token = _SOURCE.set(source)
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = _problems(exc, source)
    finally:
        _SOURCE.reset(token)
    if require_secret:
        if settings is not None:
            missing = not settings.webhook_secrets and not settings.webhook_bindings
        else:  # a broken WEBHOOK_SECRET or secrets file is already reported
            missing = not ({"webhook_secrets", "webhook_secrets_file"} & source.origins.keys())
        if missing:
            problems.insert(0, "WEBHOOK_SECRET is not set: refusing to accept unauthenticated "
                            "webhooks. Set it to the secret token configured on the GitLab webhook "
                            "(comma-separate several to rotate), or name per-project secrets in "
                            "WEBHOOK_SECRETS_FILE.")
    if problems or settings is None:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    settings._origins.update(source.origins)
    return settings


def describe_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """(variable, value as shown, origin) for every setting: secrets masked, URLs' passwords
    masked; origin is `default`, `environment` or `file <path>`."""
    out = []
    for name, info in Settings.model_fields.items():
        meta = _meta(info)
        if meta is None:
            continue
        value = getattr(settings, name)
        if meta["secret"]:
            shown = "unset" if not value else (
                f"{MASK} ({len(value)} secrets)" if isinstance(value, tuple) and len(value) > 1
                else MASK)
        elif value is None:
            shown = "unset"
        elif isinstance(value, tuple):
            shown = ",".join(value) if value else "(none)"
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        elif name == "redis_url":
            shown = mask_url(value)
        elif name == "webhook_secrets_file":
            shown = f"{value} ({len(settings.webhook_bindings)} bindings)"
        else:
            shown = str(value) if value != "" else '"" (off)'
        out.append((meta["env"], shown, settings.origins.get(name, "default")))
    return out


@dataclass(frozen=True)
class ServerLimits:
    """What the receiver's HTTP server (webhooks/worker.py) enforces before the app runs."""

    max_body_bytes: int = 25 * MB
    header_timeout: float = 5.0
    body_timeout: float = 10.0
    max_buffered_bytes: int = 64 * MB


def server_limits(env: Mapping[str, str] | None = None) -> ServerLimits:
    """The server's limits alone (no secret needed: the bench's reference apps use them too)."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    problems = []
    for name, attr, convert in (("MAX_BODY_BYTES", "max_body_bytes", _positive_int),
                                ("HEADER_TIMEOUT_SECONDS", "header_timeout", _positive_float),
                                ("BODY_TIMEOUT_SECONDS", "body_timeout", _positive_float),
                                ("MAX_BUFFERED_BYTES", "max_buffered_bytes", _positive_int)):
        raw = env.get(name)
        if raw:
            try:
                out[attr] = convert(raw)
            except ValueError as exc:
                problems.append(f"{name}={_short(raw)!r}: {exc}")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    if "max_buffered_bytes" not in out:
        out["max_buffered_bytes"] = max(64 * MB, 2 * out.get("max_body_bytes", 25 * MB))
    out["max_buffered_bytes"] = max(out["max_buffered_bytes"], out.get("max_body_bytes", 25 * MB))
    return ServerLimits(**out)












