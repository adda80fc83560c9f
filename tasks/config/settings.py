"""Typed settings, read once from the environment at start-up (pydantic-settings).

Every setting is one environment variable (warehouse's habit); secrets (and REDIS_URL, which
may carry a password) may also come from a file, `<NAME>_FILE`, so they never need to appear
on a command line. A bad value stops start-up with a message that names the variable and what
was wrong, never a secret's value. `devops-agent config check` prints what was read and from
where (tasks/cli/config.py).
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import core_schema
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tasks.config.errors import ConfigError

__all__ = ["MB", "ConfigError", "Secret", "SecretBinding", "ServerLimits", "Settings",
           "binding_matches", "describe_settings", "load_secrets_file", "load_settings",
           "server_limits", "signing_key_bytes", "signing_key_forms"]

MB = 1024 * 1024
MIN_SECRET_LENGTH = 8
MAX_SECRETS_FILE_BYTES = 1024 * 1024
# An environment value or a `_FILE` longer than this is a mistake (a whole file pasted in, a
# binary mounted by accident), not a setting; refused before any parsing looks at it.
MAX_VALUE_CHARS = 64 * 1024
# Counts, sizes and seconds end up in Redis (64-bit signed) and in socket timeouts.
MAX_INT = 2**63 - 1
MASK = "**********"
# What a binding may name: `*` (every project: the same as WEBHOOK_SECRET), a numeric project
# id, or a project/group path whose segments may hold the glob characters `*` and `?`.
_PROJECT_ID = re.compile(r"[1-9][0-9]{0,18}")
_PATH_GLOB = re.compile(r"[A-Za-z0-9_.+*?-]+(/[A-Za-z0-9_.+*?-]+)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Secret:
    """A string that never shows its value in repr(), logs, tracebacks or model dumps."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        def build(v: Any) -> Secret:
            if isinstance(v, Secret):
                return v
            if isinstance(v, str):
                return Secret(v)
            raise ValueError("expected a string")

        return core_schema.no_info_plain_validator_function(
            build, serialization=core_schema.plain_serializer_function_ser_schema(lambda _: MASK))


@dataclass(frozen=True)
class SecretBinding:
    """Secret tokens (several while rotating) that may speak for the projects `pattern` names.

    `pattern` is `*` (any project: the global WEBHOOK_SECRET), a numeric project id (`42`), or a
    path glob matched case-insensitively against `project.path_with_namespace`, where `*` also
    crosses `/` (`acme/*` is every project in the acme group and its subgroups).
    """

    pattern: str
    secrets: tuple[Secret, ...] = field(repr=False)
    line: int = 0  # where it was declared in WEBHOOK_SECRETS_FILE (0: WEBHOOK_SECRET)

    def matches(self, path: str | None, project_id: int | None) -> bool:
        return binding_matches(self.pattern, path, project_id)


def binding_matches(pattern: str, path: str | None, project_id: int | None) -> bool:
    """Does a binding's pattern cover this project? An id binding matches only the id, a path
    glob only the path; `*` matches every delivery, even one that names no project."""
    if pattern == "*":
        return True
    if pattern.isdigit():
        return project_id is not None and not isinstance(project_id, bool) \
            and str(project_id) == pattern
    if not path:
        return False
    return fnmatch.fnmatchcase(path.lower(), pattern.lower())


# --- converters: each takes the environment's text or an already typed value (Settings(...)
# built in code), so one model serves both; messages say what is expected, not the value.

def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    v = str(raw).strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _int(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ValueError("expected a whole number")
    n = int(raw)  # int(" 12 ") and int("1_000") are accepted, as before
    if n > MAX_INT:
        raise ValueError(f"too large (at most {MAX_INT})")
    return n


def _positive_int(raw: Any) -> int:
    n = _int(raw)
    if n <= 0:
        raise ValueError("must be a positive whole number")
    return n


def _non_negative_int(raw: Any) -> int:
    n = _int(raw)
    if n < 0:
        raise ValueError("must be zero or a positive whole number")
    return n


def _float(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError("expected a number")
    n = float(raw)
    # inf would pass `> 0` and then wait forever; nan fails every comparison silently
    if not math.isfinite(n):
        raise ValueError("must be a finite number")
    return n


def _positive_float(raw: Any) -> float:
    n = _float(raw)
    if not n > 0:
        raise ValueError("must be a positive number")
    return n


def _non_negative_float(raw: Any) -> float:
    n = _float(raw)
    if not n >= 0:
        raise ValueError("must be zero (off) or a positive number")
    return n


def _csv(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, (tuple, list)):
        return tuple(str(p) for p in raw)
    return tuple(p.strip() for p in str(raw).split(",") if p.strip())


def _port(raw: Any) -> int:
    n = _int(raw)
    if not 1 <= n <= 65535:
        raise ValueError("expected a TCP port (1-65535)")
    return n


def _log_level(raw: Any) -> str:
    v = str(raw).strip().upper()
    if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return v


def _http_url(raw: Any) -> str:
    v = str(raw).strip().rstrip("/")
    if not (v.startswith("https://") or v.startswith("http://")):
        raise ValueError("expected an http(s):// URL")
    return v


def _redis_url(raw: Any) -> str:
    # The message never repeats the value: it may hold the password.
    v = str(raw).strip()
    if not re.match(r"(rediss?|unix)://", v):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return v


def _memory(raw: Any) -> str:
    v = str(raw).strip().lower()
    if not re.fullmatch(r"[1-9][0-9]{0,15}(b|k|kb|m|mb|g|gb)?", v):
        raise ValueError("expected a size such as 1gb, 512mb or 1073741824")
    return v


def _choice(*options: str) -> BeforeValidator:
    def check(raw: Any) -> str:
        v = str(raw).strip().lower()
        if v not in options:
            raise ValueError(f"expected {' or '.join(options)}")
        return v
    return BeforeValidator(check)


def _webhook_secrets(raw: Any) -> tuple[Secret, ...]:
    if isinstance(raw, (tuple, list)):  # typed values given in code (tests): taken as they are
        return tuple(s if isinstance(s, Secret) else Secret(str(s)) for s in raw)
    secrets = tuple(Secret(s) for s in _csv(raw))
    if any(len(s.value) < MIN_SECRET_LENGTH for s in secrets):
        raise ValueError(f"every secret must be at least {MIN_SECRET_LENGTH} characters long")
    return secrets


def _signing_key(raw: Any) -> Secret | None:
    if raw is None:
        return None
    value = raw.value if isinstance(raw, Secret) else str(raw)
    signing_key_bytes(value)
    return Secret(value)


def _secret(raw: Any) -> Secret | None:
    if raw is None or isinstance(raw, Secret):
        return raw
    return Secret(str(raw))


PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
NonNegativeInt = Annotated[int, BeforeValidator(_non_negative_int)]
PositiveFloat = Annotated[float, BeforeValidator(_positive_float)]
NonNegativeFloat = Annotated[float, BeforeValidator(_non_negative_float)]
Csv = Annotated[tuple[str, ...], BeforeValidator(_csv)]
Flag = Annotated[bool, BeforeValidator(_bool)]
Port = Annotated[int, BeforeValidator(_port)]
OptionalSecret = Annotated[Secret | None, BeforeValidator(_secret)]


def var(name: str, default: Any = None, *, secret: bool = False, file: bool | None = None,
        masked: bool = False, keep_empty: bool = False, doc: str = "") -> Any:
    """A field read from the environment variable `name`.

    secret: never shown, never repeated in an error; `<name>_FILE` may hold it instead.
    masked: shown with its password hidden and never repeated in an error (a URL).
    keep_empty: an empty value means something (e.g. "off") instead of "unset"."""
    extra: dict[str, Any] = {"env": name, "secret": secret,
                             "file": secret if file is None else file,
                             "masked": masked or secret, "keep_empty": keep_empty}
    return Field(default, json_schema_extra=extra, description=doc or None)


def _meta(info: FieldInfo) -> dict[str, Any] | None:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) and "env" in extra else None


class _Unusable:
    """Stands in for a value the source could not read (a `_FILE` that is missing, empty, too
    large); the field's validator turns it into an error naming the variable, so every problem
    is reported in one pass together with pydantic's own."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return "<unusable>"


@dataclass(frozen=True)
class _SecretsFile:
    path: Path


class EnvironSource(PydanticBaseSettingsSource):
    """Reads each field's variable from `environ` (default os.environ), and `<NAME>_FILE` for
    the fields that allow it; records where each value came from for `config check`.

    Why not pydantic-settings' own EnvSettingsSource and `secrets_dir`: `secrets_dir` reads files
    named after the field from one directory and passes over a missing one in silence, while
    Kubernetes and Docker secrets are mounted wherever the operator chose and `<NAME>_FILE`
    (as in the official postgres and redis images) is what we document: a `_FILE` that names
    nothing must stop start-up. Our own source also treats an empty variable as unset (as
    before), refuses oversized values before parsing, and reads any mapping, so tests and
    `replay` pass their own environment without touching os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None
                 ) -> None:
        super().__init__(settings_cls)
        self.environ = os.environ if environ is None else environ
        self.origins: dict[str, str] = {}  # field -> "environment" or "file <path>"
        self.raw: dict[str, str] = {}      # field -> the text read (for messages, non-secrets only)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._read(field_name, field), field_name, False

    def _read(self, name: str, info: FieldInfo) -> Any:
        meta = _meta(info)
        if meta is None:
            return None
        var_name: str = meta["env"]
        direct = self.environ.get(var_name)
        path = self.environ.get(f"{var_name}_FILE") if meta["file"] else None
        if direct and path:
            return _Unusable(f"{var_name} and {var_name}_FILE are both set; keep one")
        if path:
            self.origins[name] = f"file {path}"
            return self._read_file(var_name, path)
        if direct is None or (direct == "" and not meta["keep_empty"]):
            return None
        self.origins[name] = "environment"
        if len(direct) > MAX_VALUE_CHARS:
            return _Unusable(f"longer than {MAX_VALUE_CHARS} characters")
        if not meta["secret"] and _CONTROL.search(direct):
            return _Unusable("contains control characters (a line break, a tab, NUL...)")
        self.raw[name] = direct
        return direct

    @staticmethod
    def _read_file(var_name: str, path: str) -> Any:
        where = f"{var_name}_FILE"
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_VALUE_CHARS + 1)
        except OSError as exc:
            return _Unusable(f"{where}: cannot read {path}: {exc.strerror}")
        if len(data) > MAX_VALUE_CHARS:
            return _Unusable(f"{where}: {path} is larger than {MAX_VALUE_CHARS} bytes")
        try:
            # A trailing newline (echo, most editors, `kubectl create secret --from-file`) is
            # not part of the secret; nor is surrounding space.
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            return _Unusable(f"{where}: {path} is not UTF-8 text")
        if not text:
            # A mount that came up empty; carrying on as if unset would hide it.
            return _Unusable(f"{where}: {path} is empty")
        return text

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            value = self._read(name, info)
            if value is not None:
                out[name] = value
        if "webhook_secrets_file" in out and isinstance(out["webhook_secrets_file"], str):
            out["webhook_bindings"] = _SecretsFile(Path(out["webhook_secrets_file"]))
            self.origins["webhook_bindings"] = f"file {out['webhook_secrets_file']}"
        return out


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
        for s in (self.gitlab_token, self.audit_token, self.sentry_dsn):
            if s is not None:
                out.append(s.value)
        if self.webhook_signing_key is not None:
            out += signing_key_forms(self.webhook_signing_key.value)
        password = url_password(self.redis_url)
        if password:
            out.append(password)
        return sorted({v for v in out if v}, key=len, reverse=True)


def url_password(url: str | None) -> str | None:
    """The password in `scheme://user:password@host...`, if any."""
    m = re.match(r"[a-z+]+://[^/@]*?:([^/@]*)@", url or "")
    return m.group(1) if m and m.group(1) else None


def mask_url(url: str) -> str:
    """`url` with its password (if any) replaced by the mask."""
    m = re.match(r"([a-z+]+://[^/@]*?:)([^/@]*)(@.*)", url, re.S)
    return f"{m.group(1)}{MASK}{m.group(3)}" if m and m.group(2) else url


def _field_var(name: str) -> str:
    if name == "webhook_bindings":
        return "WEBHOOK_SECRETS_FILE"
    meta = _meta(Settings.model_fields[name]) if name in Settings.model_fields else None
    return meta["env"] if meta else name


def _short(raw: str) -> str:
    return raw if len(raw) <= 80 else raw[:77] + "..."


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


def load_secrets_file(path: Path) -> tuple[SecretBinding, ...]:
    """WEBHOOK_SECRETS_FILE: a YAML (or, named *.json, JSON) mapping of project patterns to one
    secret or a list of them. Errors name the file, the line and the pattern, never a secret.

        acme/*: [new-secret-for-acme, old-secret-for-acme]   # the group and its subgroups
        acme/shop: shop-secret                               # one project
        "42": secret-of-project-42                           # a project id (id-only hooks)
    """
    from tasks.config.yamlfile import read_text

    text = read_text(path, "WEBHOOK_SECRETS_FILE", MAX_SECRETS_FILE_BYTES)
    if path.suffix.lower() == ".json":
        entries = _secrets_entries_json(path, text)
    else:
        entries = _secrets_entries_yaml(path, text)
    problems: list[str] = []
    seen: dict[str, int] = {}
    out: list[SecretBinding] = []
    for pattern, line, items in entries:
        where = f"{path}:{line}: {pattern}"
        if not (pattern == "*" or _PROJECT_ID.fullmatch(pattern) or _PATH_GLOB.fullmatch(pattern)):
            hint = (f" (for the group, write {pattern}/*)" if re.fullmatch(r"[A-Za-z0-9_.+-]+", pattern)
                    and not pattern.isdigit() else "")
            problems.append(f"{path}:{line}: {pattern[:80]!r}: not a project path, a group glob "
                            f"(acme/*) or a numeric project id{hint}")
            continue
        key = pattern.lower()
        if key in seen:
            problems.append(f"{where}: listed twice (first on line {seen[key]})")
            continue
        seen[key] = line
        if isinstance(items, str):
            problems.append(f"{where}: {items}")
            continue
        if not items:
            problems.append(f"{where}: no secret given")
            continue
        secrets = []
        for n, (value, item_line) in enumerate(items, 1):
            label = f"{path}:{item_line}: {pattern}" + (f" secret {n}" if len(items) > 1 else "")
            if value is None:
                problems.append(f"{label}: expected a secret (a string)")
            elif len(value) < MIN_SECRET_LENGTH:
                problems.append(f"{label}: shorter than {MIN_SECRET_LENGTH} characters")
            elif value != value.strip() or "," in value:
                problems.append(f"{label}: has surrounding spaces or a comma")
            else:
                secrets.append(Secret(value))
        out.append(SecretBinding(pattern, tuple(secrets), line))
    if not entries and not problems:
        problems.append(f"{path}:1: no bindings: expected a mapping of project patterns to secrets")
    if problems:
        raise ConfigError("invalid WEBHOOK_SECRETS_FILE:\n  - " + "\n  - ".join(problems))
    return tuple(out)


_Entry = tuple[str, int, "list[tuple[str | None, int]] | str"]


def _secrets_entries_yaml(path: Path, text: str) -> list[_Entry]:
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    from tasks.config.yamlfile import YamlSyntaxError, compose

    try:
        node = compose(text)
    except YamlSyntaxError as exc:
        # the problem text names a token kind, never the offending value
        raise ConfigError(f"{path}:{exc.line or 1}: {exc.message}") from None
    if node is None:
        return []
    if not isinstance(node, MappingNode):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: the top level must be a mapping of "
                          "project patterns to secrets")
    out: list[_Entry] = []
    for key, value in node.value:
        line = key.start_mark.line + 1
        if not isinstance(key, ScalarNode):
            out.append(("?", line, "a pattern must be a plain string"))
            continue
        pattern = key.value.strip()

        def scalar(n: Any) -> str | None:
            if isinstance(n, ScalarNode) and not (n.tag.endswith(":null") and n.value in
                                                  ("", "~", "null", "Null", "NULL")):
                return n.value
            return None

        if isinstance(value, SequenceNode):
            out.append((pattern, line, [(scalar(v), v.start_mark.line + 1) for v in value.value]))
        elif isinstance(value, ScalarNode):
            v = scalar(value)
            out.append((pattern, line, [] if v is None else [(v, value.start_mark.line + 1)]))
        else:
            out.append((pattern, line, "expected a secret or a list of secrets"))
    return out


def _secrets_entries_json(path: Path, text: str) -> list[_Entry]:
    import json

    try:
        pairs = json.loads(text, object_pairs_hook=lambda p: p)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(pairs, list):
        raise ConfigError(f"{path}:1: the top level must be an object of project patterns to "
                          "secrets")
    out: list[_Entry] = []
    pos = 0
    for pattern, value in pairs:
        # Keys come in document order: the line is where this key is written after the last one.
        m = re.compile(re.escape(json.dumps(pattern)) + r"\s*:").search(text, pos)
        if m:
            pos = m.end()
        line = text.count("\n", 0, m.start() if m else pos) + 1
        pattern = pattern.strip()
        if value is None:
            out.append((pattern, line, []))
        elif isinstance(value, str):
            out.append((pattern, line, [(value, line)]))
        elif isinstance(value, list) and all(v is None or isinstance(v, (str, int, float))
                                             for v in value):
            out.append((pattern, line, [(v if isinstance(v, str) else None, line) for v in value]))
        else:
            out.append((pattern, line, "expected a secret or a list of secrets"))
    return out


def signing_key_forms(raw: str) -> list[str]:
    """The signing secret as configured and in the forms its key could be printed in."""
    import base64

    out = [raw, raw.strip()]
    body = raw.strip().removeprefix("whsec_")
    out.append(body)
    try:
        key = signing_key_bytes(raw)
    except ValueError:
        return [v for v in out if v]
    r = repr(key)
    out += [r, r[2:-1], key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
            base64.urlsafe_b64encode(key).decode(), base64.b64encode(key).decode().rstrip("="),
            str(list(key))[1:-1]]
    text = key.decode("latin-1")
    if len(text.strip()) >= 8:
        out.append(text)  # a key of printable bytes shows as itself
    return [v for v in out if v]


def signing_key_bytes(raw: str) -> bytes:
    """Decode a Standard Webhooks signing secret (`whsec_<base64>`) into the HMAC key."""
    import base64
    import binascii

    body = raw.strip()
    if body.startswith("whsec_"):
        body = body[len("whsec_"):]
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected whsec_ followed by base64 (as GitLab shows it)") from None
    if len(key) < 16:
        raise ValueError("the decoded key is shorter than 16 bytes")
    return key
