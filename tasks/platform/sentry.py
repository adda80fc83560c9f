"""Sentry, initialised only when SENTRY_DSN is set, with secrets scrubbed from every event.

No frame local variables are sent (`include_local_variables=False`): a failing frame in the
receiver can hold the decoded signing key or a token. On top of that every event is scrubbed:
sensitive headers dropped, request bodies dropped, and every configured secret masked in every
form it could take (see Settings.secret_values: the signing key also as base64, hex, bytes repr).
"""

from __future__ import annotations

from typing import Any

import orjson

from tasks.config.settings import Settings
from tasks.platform.logs import json_forms

# Headers whose values must never leave the process.
SENSITIVE_HEADERS = {"x-gitlab-token", "webhook-signature", "authorization", "private-token",
                     "cookie", "x-gitlab-instance-token"}


def _drop_frame_vars(node: Any) -> None:
    """Remove `vars` (local variables) from every stack frame anywhere in the event."""
    if isinstance(node, dict):
        frames = node.get("frames")
        if isinstance(frames, list):
            for frame in frames:
                if isinstance(frame, dict):
                    frame.pop("vars", None)
        for value in node.values():
            if isinstance(value, (dict, list)):
                _drop_frame_vars(value)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, (dict, list)):
                _drop_frame_vars(value)


def scrubber(secrets: list[str]):
    """A Sentry before_send hook: drop sensitive headers, bodies and frame locals, and mask
    secret values anywhere."""
    # Secrets as they appear inside JSON text (quotes, backslashes and newlines escaped).
    ordered = json_forms(secrets)

    def before_send(event: dict[str, Any], hint: Any) -> dict[str, Any] | None:
        req = event.get("request") or {}
        headers = req.get("headers")
        if isinstance(headers, dict):
            for name in list(headers):
                if name.lower() in SENSITIVE_HEADERS:
                    headers[name] = "[redacted]"
        req.pop("data", None)  # webhook bodies can be 25 MB and hold private data
        _drop_frame_vars(event)
        return _masked(event, ordered)

    return before_send


def init_sentry(settings: Settings, component: str, transport: Any = None, **options: Any) -> bool:
    """`transport` and `options` are for tests: a sentry_sdk Transport that records events
    instead of sending them, and e.g. `auto_enabling_integrations=False` (the Celery integration
    would add its trace headers to every Celery message the test process builds afterwards)."""
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk  # lazy: only with a DSN (~0.25 s to import, in every process)

    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(
        dsn=settings.sentry_dsn.value,
        # Nothing a request or a frame carries is collected (tokens travel in headers, secrets
        # sit in locals); before_send scrubs what is left. `data_collection` replaces the
        # deprecated send_default_pii and says it per category.
        data_collection={
            "user_info": False, "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "off"}}, "http_bodies": [],
            "url_query_params": {"mode": "off"}, "stack_frame_variables": False,
            "database_query_data": False, "gen_ai": {"inputs": False, "outputs": False},
            "graphql": {"document": False, "variables": False},
        },
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrubber(settings.secret_values()),
        before_breadcrumb=_breadcrumb_scrubber(settings.secret_values()),
        server_name=component,
        traces_sample_rate=0.0,
        **options,
    )
    return True


def _breadcrumb_scrubber(secrets: list[str]):
    """Breadcrumbs (log lines recorded before an error) travel inside the event, which
    before_send scrubs; this masks them as they are recorded too."""
    ordered = json_forms(secrets)

    def before_breadcrumb(crumb: dict[str, Any], hint: Any) -> dict[str, Any] | None:
        return _masked(crumb, ordered)

    return before_breadcrumb


def _masked(data: dict[str, Any], ordered: list[str]) -> dict[str, Any]:
    """`data` with every secret form in `ordered` (longest first) replaced, wherever it sits:
    through its JSON text, so nested and non-string values are covered alike."""
    if not ordered:
        return data
    text = orjson.dumps(data, default=str).decode()
    if not any(s in text for s in ordered):
        return data
    for s in ordered:
        text = text.replace(s, "[redacted]")
    return orjson.loads(text)
