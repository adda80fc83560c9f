"""Structured JSON logs, one object per line, with the delivery's context on every line.

The delivery context (idempotency key, event kind, delivery id) lives in a contextvar that the
receiver sets per request and the worker per task, so code deep in a handler logs it without
threading it through every call. Configured secret values are masked in every line.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

# The default is never mutated: log_context always sets a new dict.
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "log_context", default={})  # noqa: B039
# Secrets registered by configure_logging, masked by every JsonFormatter in the process, also
# those built from a logging config file (gunicorn's own loggers) that cannot be handed them.
_registered: list[str] = []
_registered_raw: set[str] = set()

# Attributes every LogRecord has; anything else passed via `extra=` is emitted as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context for the rest of this request or task."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self._secrets = json_forms(secrets or [])

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_context.get())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(out, default=str).decode()
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, "[redacted]")
        if _registered and _registered is not self._secrets:
            for secret in _registered:
                if secret in line:
                    line = line.replace(secret, "[redacted]")
        return line


def json_forms(secrets: list[str]) -> list[str]:
    """Longest first so a secret that contains another is masked whole; as each appears inside
    JSON text (quotes, backslashes, newlines escaped)."""
    return [orjson.dumps(s).decode()[1:-1]
            for s in sorted({s for s in secrets if s}, key=len, reverse=True)]


def register_secrets(secrets: list[str]) -> None:
    """Mask these in every JSON log line of this process, whichever handler formats it."""
    _registered_raw.update(s for s in secrets if s)
    _registered[:] = json_forms(list(_registered_raw))


def configure_logging(level: str = "INFO", secrets: list[str] | None = None) -> None:
    register_secrets(secrets or [])
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter()
    formatter._secrets = _registered  # every secret registered so far, this call's included
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that log request URLs at INFO would only add noise.
    for noisy in ("urllib3", "kubernetes", "gitlab"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def now() -> float:
    return time.time()
