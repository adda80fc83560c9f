"""Delivery verification: GitLab's secret token (bound to projects), its HMAC signing (Standard
Webhooks), and the instance a delivery says it comes from."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tasks.config.settings import SecretBinding, binding_matches
from tasks.intake.signing import signature

SIGNATURE_TOLERANCE_SECONDS = 300
# Unix seconds: ASCII digits only (int() would also take "+1", "1_0", "١٢" or 400 digits).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
GLOBAL = "*"


class VerificationError(Exception):
    """Why a delivery was refused; `reason` is a metric label, str() the reply's message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _digest(value: bytes) -> bytes:
    # Compared as digests: equal lengths, so the comparison does not even reveal a length.
    return hashlib.sha256(value).digest()


def _encode(presented: str) -> bytes:
    # A header is latin-1 text from a real server; anything a test client passes still encodes.
    return presented.encode("utf-8", "surrogatepass")


def check_token(presented: str | None, secrets: Iterable[bytes]) -> None:
    """Compare X-Gitlab-Token with every configured secret in constant time."""
    if not presented:
        raise VerificationError("token_missing", "missing X-Gitlab-Token header")
    given = _digest(_encode(presented))
    ok = False
    for secret in secrets:
        # Compare against all of them, so timing does not tell which one (if any) matched.
        ok |= hmac.compare_digest(given, _digest(secret))
    if not ok:
        raise VerificationError("token_invalid", "X-Gitlab-Token does not match")


class TokenVerifier:
    """X-Gitlab-Token against the global secrets (WEBHOOK_SECRET: valid for every project) and
    the bound ones (WEBHOOK_SECRETS_FILE: valid only for the projects their pattern names).

    `match` compares the token with every secret, without stopping at the first match, and
    returns which bindings it matched; `bound_to` then picks the binding that covers the project
    the body names (most specific first), or None when none does.
    """

    def __init__(self, global_secrets: Sequence[str], bindings: Sequence[SecretBinding] = ()):
        self.patterns: list[str] = []
        self._entries: list[tuple[bytes, int]] = []  # (digest of a secret, index into patterns)
        if global_secrets:
            self._add(GLOBAL, global_secrets)
        for b in sorted(bindings, key=_specificity):
            self._add(b.pattern, [s.value for s in b.secrets])

    def _add(self, pattern: str, secrets: Iterable[str]) -> None:
        index = len(self.patterns)
        self.patterns.append(pattern)
        self._entries += [(_digest(s.encode()), index) for s in secrets]

    def match(self, presented: str | None) -> list[bool]:
        if not presented:
            raise VerificationError("token_missing", "missing X-Gitlab-Token header")
        given = _digest(_encode(presented))
        hits = [False] * len(self.patterns)
        for secret, index in self._entries:  # every secret, no early exit
            hits[index] |= hmac.compare_digest(given, secret)
        if not any(hits):
            raise VerificationError("token_invalid", "X-Gitlab-Token does not match")
        return hits

    def bound_to(self, hits: list[bool], path: str | None, project_id: int | None) -> str | None:
        """The pattern of the most specific matched binding covering this project, or None."""
        for pattern, hit in zip(self.patterns, hits, strict=True):
            if hit and pattern != GLOBAL and binding_matches(pattern, path, project_id):
                return pattern
        if self.patterns and self.patterns[0] == GLOBAL and hits[0]:
            return GLOBAL
        return None


def _specificity(b: SecretBinding) -> tuple[int, int]:
    """Project ids first, then literal paths, then globs with the longest fixed text first."""
    if b.pattern.isdigit():
        return (0, 0)
    wild = sum(b.pattern.count(c) for c in "*?")
    return (1 if wild == 0 else 2, -(len(b.pattern) - wild))


def project_named(payload: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """(project.path_with_namespace, project.id or project_id) from a delivery's body; ValueError
    when one has the wrong type or the two ids disagree (GitLab never sends that)."""
    path: str | None = None
    pid: int | None = None
    project = payload.get("project")
    if project is not None:
        if not isinstance(project, dict):
            raise ValueError("project must be an object")
        path = project.get("path_with_namespace")
        if path is not None and not isinstance(path, str):
            raise ValueError("project.path_with_namespace must be a string")
        pid = project.get("id")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
            raise ValueError("project.id must be a whole number")
    top = payload.get("project_id")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int):
            raise ValueError("project_id must be a whole number")
        if pid is not None and top != pid:
            raise ValueError("project.id and project_id name different projects")
        pid = top
    return (path or None), pid


def origin(url: str) -> str | None:
    """scheme://host:port of an http(s) URL, lower-cased with the default port made explicit;
    None when it is not one."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("http", "https") or not host or parts.username is not None:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or (443 if scheme == 'https' else 80)}"


def check_instance(presented: str | None, expected: str | None) -> None:
    """X-Gitlab-Instance, when sent, must be the configured GITLAB_URL (scheme, host, port)."""
    if expected is None or presented is None:
        return
    got = origin(presented) or ""
    if not hmac.compare_digest(_encode(got), expected.encode()):
        raise VerificationError("instance_mismatch",
                                "X-Gitlab-Instance is not the GitLab this service is set up for")


def check_signature(headers: Mapping[str, str], body: bytes, key: bytes,
                    now: float | None = None) -> None:
    """Verify `webhook-signature` over "{webhook-id}.{webhook-timestamp}.{raw body}"."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise VerificationError("signature_missing",
                                "missing webhook-id, webhook-timestamp or webhook-signature header")
    if not _TIMESTAMP.fullmatch(stamp):
        raise VerificationError("signature_invalid", "webhook-timestamp is not a Unix time")
    ts = int(stamp)
    now = time.time() if now is None else now
    if abs(now - ts) > SIGNATURE_TOLERANCE_SECONDS:
        raise VerificationError("signature_stale",
                                "webhook-timestamp is more than 5 minutes from our clock")
    try:
        msg_id.encode()
    except UnicodeEncodeError:
        raise VerificationError("signature_invalid", "webhook-id is not text") from None
    expected = signature(key, msg_id, stamp, body).encode()
    # The header may carry several space-separated "v1,<sig>" entries during key rotation.
    ok = False
    for part in signatures.split()[:20]:
        version, _, sig = part.partition(",")
        ok |= version == "v1" and hmac.compare_digest(_encode(sig), expected)
    if not ok:
        raise VerificationError("signature_invalid", "webhook-signature does not match")
