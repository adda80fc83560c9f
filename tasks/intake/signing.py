"""GitLab's webhook signing (the Standard Webhooks scheme), shared by the receiver and `replay`."""

from __future__ import annotations

import base64
import hashlib
import hmac


def signature(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """base64 HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{raw body}"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    return "v1," + signature(key, msg_id, timestamp, body)
