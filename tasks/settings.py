"""Typed settings, read once from the environment at start-up.

Every setting is one environment variable (warehouse's habit); secrets may also come from a file
(`<NAME>_FILE`) so they never need to appear on a command line. A bad value stops start-up with a
message that names the variable and what was wrong, never the secret's value.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 1024 * 1024
MIN_SECRET_LENGTH = 8
MAX_SECRETS_FILE_BYTES = 1024 * 1024
# What a binding may name: `*` (every project: the same as WEBHOOK_SECRET), a numeric project
# id, or a project/group path whose segments may hold the glob characters `*` and `?`.
_PROJECT_ID = re.compile(r"[1-9][0-9]{0,18}")
_PATH_GLOB = re.compile(r"[A-Za-z0-9_.+*?-]+(/[A-Za-z0-9_.+*?-]+)+")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable (or file, line, field)."""


@dataclass(frozen=True)
class Secret:
    """A string that never shows its value in repr(), logs or tracebacks."""

    value: str = field(repr=False)

    def __repr__(self) -> str:  # pragma: no cover - trivial
        return "Secret('**********')"

    __str__ = __repr__


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


def _non_negative_float(raw: str) -> float:
    n = float(raw)
    if not n >= 0:
        raise ValueError("must be zero (off) or a positive number")
    return n


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    webhook_secrets: tuple[Secret, ...]
    webhook_signing_key: Secret | None = None
    # WEBHOOK_SECRETS_FILE: secrets that are valid only for the projects their pattern names
    webhook_bindings: tuple[SecretBinding, ...] = ()
    webhook_secrets_file: Path | None = None
    # The receiver's HTTP server (webhooks/worker.py): how long a client may take to send the
    # request head and the body, and how many request bytes one web worker buffers at most.
    header_timeout_seconds: float = 5.0
    body_timeout_seconds: float = 10.0
    max_buffered_bytes: int | None = None  # None: max(64 MB, 2 x MAX_BODY_BYTES)
    redis_url: str | None = None
    data_dir: Path = Path("devops-agent-data")
    max_body_bytes: int = 25 * MB
    dedup_ttl_seconds: int = 24 * 3600
    # How long an item of work may sit queued with its message lost (no worker holding its
    # lease, the queue drained) before the engine sends it again (tasks/schedule.py).
    redeliver_after_seconds: float = 15.0
    task_lease_seconds: float = 30.0
    inbox_retention_seconds: int = 7 * 24 * 3600
    # Bodies are the bulk of the inbox: kept this long after their delivery finished.
    body_retention_seconds: int = 24 * 3600
    # The reconcile pass (tasks/reconcile.py): how often, and how far back at most.
    reconcile_interval_seconds: float = 300.0
    reconcile_lookback_seconds: float = 24 * 3600.0
    task_queue: str = "devops-agent"
    log_level: str = "INFO"
    sentry_dsn: Secret | None = None
    gitlab_url: str | None = None
    gitlab_token: Secret | None = None
    # Per HTTP request to GitLab; a write that times out is resolved by reading, not re-sent.
    gitlab_timeout_seconds: float = 10.0
    gitlab_projects: tuple[str, ...] = ()
    dry_run: bool = False
    rules_file: Path | None = None
    config_file: Path | None = None
    bot_username: str | None = None
    handlers: tuple[str, ...] = ()
    extra_handler_modules: tuple[str, ...] = ()
    audit_token: Secret | None = None
    # The Alertmanager receiver (POST /webhooks/alertmanager): Bearer tokens (several while
    # rotating) and/or one `user:password` for basic auth; off while neither is set.
    alertmanager_tokens: tuple[Secret, ...] = ()
    alertmanager_basic_auth: Secret | None = None
    alertmanager_max_body_bytes: int = 1 * MB
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
    # Not in the `ci::` scope of LABEL_FAILED/LABEL_PASSED: on Premium, GitLab keeps one label
    # per scope, so an issue given both would silently lose one.
    fix_labels: tuple[str, ...] = ("ci-fix-needed",)
    fix_queue: str | None = None
    max_log_bytes: int = 8 * MB

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
        if self.alertmanager_basic_auth is not None:
            import base64

            out.append(base64.b64encode(self.alertmanager_basic_auth.value.encode()).decode())
        if self.webhook_signing_key is not None:
            out += signing_key_forms(self.webhook_signing_key.value)
        return sorted({v for v in out if v}, key=len, reverse=True)


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

    try:
        secrets_raw = _read_secret(env, "WEBHOOK_SECRET")
    except ConfigError as exc:
        problems.append(str(exc))
        secrets_raw = None
    secrets = tuple(Secret(s) for s in _csv(secrets_raw or ""))
    bindings: tuple[SecretBinding, ...] = ()
    secrets_file = env.get("WEBHOOK_SECRETS_FILE")
    if secrets_file:
        values["webhook_secrets_file"] = Path(secrets_file)
        try:
            bindings = load_secrets_file(Path(secrets_file))
        except ConfigError as exc:
            lines = str(exc).splitlines()
            problems += [x[4:] for x in lines if x.startswith("  - ")] or lines
            bindings = (SecretBinding("*", ()),)  # do not also report "no secret configured"
    if require_secret and not secrets and not bindings:
        problems.append(
            "WEBHOOK_SECRET is not set: refusing to accept unauthenticated webhooks. Set it to the "
            "secret token configured on the GitLab webhook (comma-separate several to rotate), "
            "or name per-project secrets in WEBHOOK_SECRETS_FILE."
        )
    for s in secrets:
        if len(s.value) < MIN_SECRET_LENGTH:
            problems.append(f"WEBHOOK_SECRET: every secret must be at least {MIN_SECRET_LENGTH} "
                            "characters long")
            break
    values["webhook_bindings"] = tuple(b for b in bindings if b.secrets)
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
    take("BODY_RETENTION_SECONDS", "body_retention_seconds", _positive_int)
    take("RECONCILE_INTERVAL_SECONDS", "reconcile_interval_seconds", _non_negative_float)
    take("RECONCILE_LOOKBACK_SECONDS", "reconcile_lookback_seconds", _positive_float)
    take("TASK_QUEUE", "task_queue", str)
    take("LOG_LEVEL", "log_level", _log_level)
    take("GITLAB_URL", "gitlab_url", _http_url)
    take("GITLAB_TIMEOUT_SECONDS", "gitlab_timeout_seconds", _positive_float)
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
    take("HEADER_TIMEOUT_SECONDS", "header_timeout_seconds", _positive_float)
    take("BODY_TIMEOUT_SECONDS", "body_timeout_seconds", _positive_float)
    take("MAX_BUFFERED_BYTES", "max_buffered_bytes", _positive_int)
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
    take("ALERTMANAGER_MAX_BODY_BYTES", "alertmanager_max_body_bytes", _positive_int)
    try:
        tokens = tuple(Secret(t) for t in _csv(_read_secret(env, "ALERTMANAGER_TOKEN") or ""))
        basic = _read_secret(env, "ALERTMANAGER_BASIC_AUTH")
    except ConfigError as exc:
        problems.append(str(exc))
        tokens, basic = (), None
    if any(len(t.value) < MIN_SECRET_LENGTH for t in tokens):
        problems.append(f"ALERTMANAGER_TOKEN: every token must be at least {MIN_SECRET_LENGTH} "
                        "characters long")
    values["alertmanager_tokens"] = tokens
    if basic:
        user, sep, password = basic.partition(":")
        if not sep or not user or len(password) < MIN_SECRET_LENGTH:
            problems.append("ALERTMANAGER_BASIC_AUTH: expected `user:password` with a password "
                            f"of at least {MIN_SECRET_LENGTH} characters")
        else:
            values["alertmanager_basic_auth"] = Secret(basic)
    buffered = values.get("max_buffered_bytes")
    body_limit = values.get("max_body_bytes", 25 * MB)
    if isinstance(buffered, int) and isinstance(body_limit, int) and buffered < body_limit:
        problems.append("MAX_BUFFERED_BYTES: must be at least MAX_BODY_BYTES (one whole body)")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return Settings(**values)  # type: ignore[arg-type]


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
                problems.append(f"{name}={raw!r}: {exc}")
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
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"WEBHOOK_SECRETS_FILE: cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_SECRETS_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_SECRETS_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
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
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        # the problem text names a token kind, never the offending value
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', 'syntax error')}"
                          ) from None
    if node is None:
        return []
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: the top level must be a mapping of "
                          "project patterns to secrets")
    out: list[_Entry] = []
    for key, value in node.value:
        line = key.start_mark.line + 1
        if not isinstance(key, yaml.ScalarNode):
            out.append(("?", line, "a pattern must be a plain string"))
            continue
        pattern = key.value.strip()

        def scalar(n: Any) -> str | None:
            if isinstance(n, yaml.ScalarNode) and not (n.tag.endswith(":null") and n.value in
                                                       ("", "~", "null", "Null", "NULL")):
                return n.value
            return None

        if isinstance(value, yaml.SequenceNode):
            out.append((pattern, line, [(scalar(v), v.start_mark.line + 1) for v in value.value]))
        elif isinstance(value, yaml.ScalarNode):
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
