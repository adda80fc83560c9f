"""Sentry, initialised only when SENTRY_DSN is set, with secrets scrubbed from every event."""

from __future__ import annotations

from typing import Any

import orjson

from tasks.settings import Settings

# Headers whose values must never leave the process.
SENSITIVE_HEADERS = {"x-gitlab-token", "webhook-signature", "authorization", "private-token",
                     "cookie"}


def scrubber(secrets: list[str]):
    """A Sentry before_send hook: drop sensitive headers and mask secret values anywhere."""
    # Secrets as they appear inside JSON text (quotes, backslashes and newlines escaped).
    ordered = [orjson.dumps(s).decode()[1:-1]
               for s in sorted({s for s in secrets if s}, key=len, reverse=True)]

    def before_send(event: dict[str, Any], hint: Any) -> dict[str, Any] | None:
        req = event.get("request") or {}
        headers = req.get("headers")
        if isinstance(headers, dict):
            for name in list(headers):
                if name.lower() in SENSITIVE_HEADERS:
                    headers[name] = "[redacted]"
        req.pop("data", None)  # webhook bodies can be 25 MB and hold private data
        if not ordered:
            return event
        text = orjson.dumps(event, default=str).decode()
        if not any(s in text for s in ordered):
            return event
        for s in ordered:
            text = text.replace(s, "[redacted]")
        return orjson.loads(text)

    return before_send


def init_sentry(settings: Settings, component: str) -> bool:
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn.value,
        send_default_pii=False,
        max_request_body_size="never",
        before_send=scrubber(settings.secret_values()),
        server_name=component,
        traces_sample_rate=0.0,
    )
    return True
