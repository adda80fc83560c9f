"""Delivery verification: GitLab's secret token, and its HMAC signing (Standard Webhooks)."""

from __future__ import annotations

import hmac
import time
from typing import Iterable, Mapping

from tasks.signing import signature

SIGNATURE_TOLERANCE_SECONDS = 300


class VerificationError(Exception):
    """Why a delivery was refused; `reason` is a metric label, str() the reply's message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_token(presented: str | None, secrets: Iterable[bytes]) -> None:
    """Compare X-Gitlab-Token with every configured secret in constant time."""
    if not presented:
        raise VerificationError("token_missing", "missing X-Gitlab-Token header")
    given = presented.encode("utf-8", "surrogateescape")
    ok = False
    for secret in secrets:
        # Compare against all of them, so timing does not tell which one (if any) matched.
        ok |= hmac.compare_digest(given, secret)
    if not ok:
        raise VerificationError("token_invalid", "X-Gitlab-Token does not match")


def check_signature(headers: Mapping[str, str], body: bytes, key: bytes,
                    now: float | None = None) -> None:
    """Verify `webhook-signature` over "{webhook-id}.{webhook-timestamp}.{raw body}"."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise VerificationError("signature_missing",
                                "missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        ts = int(stamp)
    except ValueError:
        raise VerificationError("signature_invalid", "webhook-timestamp is not a Unix time") from None
    now = time.time() if now is None else now
    if abs(now - ts) > SIGNATURE_TOLERANCE_SECONDS:
        raise VerificationError("signature_stale",
                                "webhook-timestamp is more than 5 minutes from our clock")
    expected = signature(key, msg_id, stamp, body).encode()
    # The header may carry several space-separated "v1,<sig>" entries during key rotation.
    for part in signatures.split():
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return
    raise VerificationError("signature_invalid", "webhook-signature does not match")

