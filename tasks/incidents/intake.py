"""What the receiver checks on an Alertmanager notification before acknowledging it.

Kept to the standard library (no pydantic): the web process answers from this module alone.
Alertmanager's webhook (payload version "4") sends one notification per alert group; its
`http_config` authenticates with `Authorization: Bearer <token>` (`authorization:`) or basic
auth (`basic_auth:`), both compared here in constant time against every configured value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tasks.intake.kinds import ALERT_KIND as KIND
from tasks.intake.kinds import ALERTMANAGER_EVENT as EVENT

__all__ = ["EVENT", "KIND", "AuthError", "PayloadError", "check_auth", "dedup_key", "validate"]
# Bounds on what one notification may carry. Alertmanager has no limit of its own unless
# `max_alerts` is set on the receiver (then `truncatedAlerts` counts the rest).
MAX_ALERTS = 500
MAX_LABELS = 64
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 1024
MAX_ANNOTATIONS = 64
MAX_GROUP_KEY = 4096
MAX_URL = 4096
MAX_FINGERPRINT = 64
STATUSES = ("firing", "resolved")


class AuthError(Exception):
    """The request is not from our Alertmanager; the message never contains what was sent."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PayloadError(Exception):
    """The body is not an Alertmanager version 4 notification; the message names the field."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _any_equal(given: bytes, expected: Iterable[bytes]) -> bool:
    # Every configured value is compared (no early exit), each in constant time.
    found = False
    for value in expected:
        found |= hmac.compare_digest(given, value)
    return found


def check_auth(header: str | None, tokens: Iterable[str], basic: Iterable[str]) -> str:
    """Which scheme authenticated the request ("bearer" or "basic"), or AuthError."""
    token_bytes, basic_bytes = [t.encode() for t in tokens], [b.encode() for b in basic]
    if not token_bytes and not basic_bytes:
        raise AuthError("not_configured", "the Alertmanager receiver is off: set "
                                          "ALERTMANAGER_TOKEN or ALERTMANAGER_BASIC_AUTH")
    if not header:
        raise AuthError("missing", "missing Authorization header (Bearer or Basic)")
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        if token_bytes and _any_equal(credentials.encode(errors="surrogateescape"), token_bytes):
            return "bearer"
        raise AuthError("invalid", "the Bearer token is not valid for this receiver")
    if scheme.lower() == "basic" and credentials:
        try:
            pair = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            raise AuthError("invalid", "the Basic credentials are not base64") from None
        if basic_bytes and _any_equal(pair, basic_bytes):
            return "basic"
        raise AuthError("invalid", "the Basic credentials are not valid for this receiver")
    raise AuthError("invalid", "Authorization must be `Bearer <token>` or `Basic <credentials>`")


def parse_time(value: Any, where: str, *, optional: bool = False) -> datetime | None:
    """An RFC 3339 time; Alertmanager's zero time (year 1) means "not set"."""
    if value in (None, "") and optional:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise PayloadError(f"{where}: expected an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{where}: {value[:40]!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise PayloadError(f"{where}: the time has no offset (expected e.g. ...Z)")
    return None if parsed.year <= 1 else parsed


def _str(value: Any, where: str, limit: int, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected a string, got {type(value).__name__}")
    if required and not value:
        raise PayloadError(f"{where}: must not be empty")
    if len(value) > limit:
        raise PayloadError(f"{where}: longer than {limit} characters ({len(value)})")
    return value


def _pairs(value: Any, where: str, count: int, value_limit: int | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected an object of strings")
    if len(value) > count:
        raise PayloadError(f"{where}: more than {count} entries ({len(value)})")
    for name, text in value.items():
        if not name or len(name) > MAX_LABEL_NAME:
            raise PayloadError(f"{where}: a name is empty or longer than {MAX_LABEL_NAME} "
                               "characters")
        if not isinstance(text, str):
            raise PayloadError(f"{where}.{name[:40]}: expected a string, got "
                               f"{type(text).__name__}")
        if value_limit is not None and len(text) > value_limit:
            raise PayloadError(f"{where}.{name[:40]}: longer than {value_limit} characters "
                               f"({len(text)})")
    return value


def validate(payload: Any) -> dict[str, Any]:
    """The notification, checked field by field (PayloadError names the first bad one).
    Labels are identifiers and bounded; annotations are free text, bounded only by the body
    limit here and cut short when rendered."""
    if not isinstance(payload, dict):
        raise PayloadError("body must be a JSON object")
    version = payload.get("version")
    if version is None:
        raise PayloadError("version: missing (Alertmanager sends \"4\")")
    if version != "4":
        shown = version if isinstance(version, str) else type(version).__name__
        raise PayloadError(f"version: {str(shown)[:20]!r} is not supported; expected \"4\"")
    _str(payload.get("groupKey"), "groupKey", MAX_GROUP_KEY)
    if payload.get("status") not in STATUSES:
        raise PayloadError("status: expected \"firing\" or \"resolved\"")
    _str(payload.get("receiver"), "receiver", MAX_LABEL_VALUE)
    for name in ("groupLabels", "commonLabels"):
        _pairs(payload.get(name), name, MAX_LABELS, MAX_LABEL_VALUE)
    _pairs(payload.get("commonAnnotations"), "commonAnnotations", MAX_ANNOTATIONS, None)
    _str(payload.get("externalURL"), "externalURL", MAX_URL, required=False)
    truncated = payload.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError("truncatedAlerts: expected a whole number ≥ 0")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise PayloadError("alerts: expected a non-empty list")
    if len(alerts) > MAX_ALERTS:
        raise PayloadError(f"alerts: {len(alerts)} alerts in one notification; at most "
                           f"{MAX_ALERTS} (set `max_alerts` on the Alertmanager receiver)", 413)
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(alert, dict):
            raise PayloadError(f"{where}: expected an object")
        if alert.get("status") not in STATUSES:
            raise PayloadError(f"{where}.status: expected \"firing\" or \"resolved\"")
        labels = alert.get("labels")
        if not isinstance(labels, dict) or not labels:
            raise PayloadError(f"{where}.labels: expected a non-empty object of strings")
        _pairs(labels, f"{where}.labels", MAX_LABELS, MAX_LABEL_VALUE)
        _pairs(alert.get("annotations"), f"{where}.annotations", MAX_ANNOTATIONS, None)
        parse_time(alert.get("startsAt"), f"{where}.startsAt")
        parse_time(alert.get("endsAt"), f"{where}.endsAt", optional=True)
        _str(alert.get("generatorURL"), f"{where}.generatorURL", MAX_URL, required=False)
        _str(alert.get("fingerprint"), f"{where}.fingerprint", MAX_FINGERPRINT)
    return payload


def dedup_key(payload: dict[str, Any]) -> str:
    """The notification's identity: its group, its status and each alert's (fingerprint,
    startsAt, status). Alertmanager's `repeat_interval` re-sends the same notification and is
    a duplicate; an alert that fires again (new startsAt) or resolves is new."""
    h = hashlib.sha256(b"alertmanager\0" + payload["groupKey"].encode("utf-8", "surrogatepass"))
    h.update(b"\0" + payload["status"].encode())
    for fp, starts, status in sorted((a["fingerprint"], a["startsAt"], a["status"])
                                     for a in payload["alerts"]):
        h.update(f"\0{fp}\0{starts}\0{status}".encode("utf-8", "surrogatepass"))
    return "alertmanager:" + h.hexdigest()
