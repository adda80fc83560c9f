"""Typed settings, read once from the environment at start-up.

Every setting is one environment variable (warehouse's habit); secrets may also come from a file
(`<NAME>_FILE`) so they never need to appear on a command line. A bad value stops start-up with a
message that names the variable and what was wrong, never the secret's value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

MB = 1024 * 1024


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable (or file, line, field)."""


@dataclass(frozen=True)
class Secret:
    """A string that never shows its value in repr(), logs or tracebacks."""

    value: str = field(repr=False)

    def __repr__(self) -> str:  # pragma: no cover - trivial
        return "Secret('**********')"

    __str__ = __repr__


def _bool(raw: str) -> bool:
    v = raw.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _positive_int(raw: str) -> int:
    n = int(raw)
    if n <= 0:
        raise ValueError("must be a positive whole number")
    return n


def _non_negative_int(raw: str) -> int:
    n = int(raw)
    if n < 0:
        raise ValueError("must be zero or a positive whole number")
    return n


def _positive_float(raw: str) -> float:
    n = float(raw)
    if not n > 0:
        raise ValueError("must be a positive number")
    return n


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    webhook_secrets: tuple[Secret, ...]
    webhook_signing_key: Secret | None = None
    redis_url: str | None = None
    data_dir: Path = Path("devops-agent-data")
    max_body_bytes: int = 25 * MB
    dedup_ttl_seconds: int = 24 * 3600
    # How long an acknowledged delivery may sit unfinished (no worker holding its lease)
    # before the reaper puts it back on the queue.
    redeliver_after_seconds: float = 15.0
    task_lease_seconds: float = 30.0
    inbox_retention_seconds: int = 7 * 24 * 3600
    task_queue: str = "devops-agent"
    log_level: str = "INFO"
    sentry_dsn: Secret | None = None
    gitlab_url: str | None = None
    gitlab_token: Secret | None = None
    gitlab_projects: tuple[str, ...] = ()
    dry_run: bool = False
    rules_file: Path | None = None
    config_file: Path | None = None
    bot_username: str | None = None
    handlers: tuple[str, ...] = ()
    extra_handler_modules: tuple[str, ...] = ()
    audit_token: Secret | None = None
    # Reacting to failures (issue 4)
    retry_budget: int = 2  # GitLab's own `retry:` cap per job
    outage_job_threshold: int = 5  # more failed jobs than this in one pipeline: an outage
    breaker_projects: int = 3  # a rule failing in more projects than this within the window...
    breaker_window_seconds: int = 600  # ...stops being retried and opens one incident issue
    incident_project: str | None = None
    label_failed: str = "ci::failed"
    label_passed: str = "ci::passed"
    # Not a scoped label (one colon): GitLab keeps only one label per `scope::`, and a pipeline
    # can fail in several categories at once; `ci::failed`/`ci::passed` are scoped on purpose.
    label_category_prefix: str = "ci-failure:"
    fix_labels: tuple[str, ...] = ("ci::fix-needed",)
    fix_queue: str | None = None
    max_log_bytes: int = 8 * MB

    def secret_values(self) -> list[str]:
        """Every configured secret's value, for log and Sentry scrubbing."""
        out = [s.value for s in self.webhook_secrets]
        for s in (self.webhook_signing_key, self.gitlab_token, self.audit_token):
            if s is not None:
                out.append(s.value)
        return [v for v in out if v]


def _read_secret(env: Mapping[str, str], name: str) -> str | None:
    """`NAME` or the contents of the file named by `NAME_FILE` (Kubernetes secret mounts)."""
    direct = env.get(name)
    path = env.get(f"{name}_FILE")
    if direct and path:
        raise ConfigError(f"{name} and {name}_FILE are both set; keep one")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return direct


def load_settings(env: Mapping[str, str] | None = None, *, require_secret: bool = True) -> Settings:
    """Build Settings from `env` (default os.environ); raise ConfigError naming the variable."""
    env = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, object] = {}

    def take(name: str, attr: str, convert: Callable[[str], object]) -> None:
        raw = env.get(name)
        if raw is None or raw == "":
            return
        try:
            values[attr] = convert(raw)
        except (ValueError, TypeError) as exc:
            problems.append(f"{name}={raw!r}: {exc}")

    secrets_raw = _read_secret(env, "WEBHOOK_SECRET")
    secrets = tuple(Secret(s) for s in _csv(secrets_raw or ""))
    if require_secret and not secrets:
        problems.append(
            "WEBHOOK_SECRET is not set: refusing to accept unauthenticated webhooks. Set it to the "
            "secret token configured on the GitLab webhook (comma-separate several to rotate)."
        )
    for s in secrets:
        if len(s.value) < 8:
            problems.append("WEBHOOK_SECRET: every secret must be at least 8 characters long")
            break
    signing = _read_secret(env, "WEBHOOK_SIGNING_KEY")
    values["webhook_secrets"] = secrets
    if signing:
        try:
            signing_key_bytes(signing)
            values["webhook_signing_key"] = Secret(signing)
        except ValueError as exc:
            problems.append(f"WEBHOOK_SIGNING_KEY: {exc}")
    take("REDIS_URL", "redis_url", str)
    take("DATA_DIR", "data_dir", Path)
    take("MAX_BODY_BYTES", "max_body_bytes", _positive_int)
    take("DEDUP_TTL_SECONDS", "dedup_ttl_seconds", _positive_int)
    take("REDELIVER_AFTER_SECONDS", "redeliver_after_seconds", _positive_float)
    take("TASK_LEASE_SECONDS", "task_lease_seconds", _positive_float)
    take("INBOX_RETENTION_SECONDS", "inbox_retention_seconds", _positive_int)
    take("TASK_QUEUE", "task_queue", str)
    take("LOG_LEVEL", "log_level", _log_level)
    take("GITLAB_URL", "gitlab_url", _http_url)
    take("GITLAB_PROJECTS", "gitlab_projects", _csv)
    take("DRY_RUN", "dry_run", _bool)
    take("RULES_FILE", "rules_file", Path)
    take("DEVOPS_AGENT_CONFIG", "config_file", Path)
    take("BOT_USERNAME", "bot_username", str)
    take("HANDLERS", "handlers", _csv)
    take("RETRY_BUDGET", "retry_budget", _non_negative_int)
    take("OUTAGE_JOB_THRESHOLD", "outage_job_threshold", _positive_int)
    take("BREAKER_PROJECTS", "breaker_projects", _positive_int)
    take("BREAKER_WINDOW_SECONDS", "breaker_window_seconds", _positive_int)
    take("INCIDENT_PROJECT", "incident_project", str)
    take("LABEL_FAILED", "label_failed", str)
    take("LABEL_PASSED", "label_passed", str)
    take("LABEL_CATEGORY_PREFIX", "label_category_prefix", str)
    take("FIX_LABELS", "fix_labels", _csv)
    take("FIX_QUEUE", "fix_queue", str)
    take("MAX_LOG_BYTES", "max_log_bytes", _positive_int)
    take("EXTRA_HANDLER_MODULES", "extra_handler_modules", _csv)
    for name, attr in (("SENTRY_DSN", "sentry_dsn"), ("GITLAB_TOKEN", "gitlab_token"),
                       ("AUDIT_TOKEN", "audit_token")):
        try:
            raw = _read_secret(env, name)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if raw:
            values[attr] = Secret(raw)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return Settings(**values)  # type: ignore[arg-type]


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


def _log_level(raw: str) -> str:
    v = raw.strip().upper()
    if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return v


def _http_url(raw: str) -> str:
    v = raw.strip().rstrip("/")
    if not (v.startswith("https://") or v.startswith("http://")):
        raise ValueError("expected an http(s):// URL")
    return v
