"""`devops-agent replay PAYLOAD.json --url URL`: send a payload exactly as GitLab would.

All of GitLab's delivery headers are set (event, token, UUIDs, Idempotency-Key, User-Agent, and
the signature headers when WEBHOOK_SIGNING_KEY is set), so a user can test a setup end to end
without GitLab. The token comes from the environment only, never from the command line.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import orjson

from tasks.config.settings import ConfigError, load_settings, signing_key_bytes
from tasks.intake.kinds import EVENT_KINDS, HEADER_FOR_OBJECT_KIND
from tasks.intake.signing import signature_header

GITLAB_VERSION = "17.11.0"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="send a webhook payload to a running devops-agent as GitLab does")
    p.add_argument("payload", type=Path, help="a JSON payload file (- for stdin)")
    p.add_argument("--url", help="e.g. http://127.0.0.1:8080/webhooks/gitlab")
    p.add_argument("--dry-run", action="store_true",
                   help="instead of sending, run the handlers here with DRY_RUN=1 and print every "
                        "decision (reads GitLab, writes nothing)")
    p.add_argument("--event", help="X-Gitlab-Event (default: from the payload's object_kind)")
    p.add_argument("--idempotency-key", help="reuse a key to test de-duplication (default: new)")
    p.add_argument("--timeout", type=float, default=10.0, help="GitLab's own default is 10 s")
    p.add_argument("--token", help="the secret token to send (default: WEBHOOK_SECRET; with "
                                   "WEBHOOK_SECRETS_FILE, the project's secret)")
    p.set_defaults(func=replay)


def build_request(body: bytes, event: str | None, idempotency_key: str | None,
                  instance: str | None = None, token: str | None = None
                  ) -> tuple[str, dict[str, str]]:
    """Headers as GitLab sends them; returns (event, headers). Raises ValueError on bad input."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"payload is not valid JSON: {exc.msg}") from None
    if not isinstance(payload, dict):
        raise ValueError("payload must be a JSON object")
    if event is None:
        kind = payload.get("object_kind")
        event = HEADER_FOR_OBJECT_KIND.get(str(kind))
        if event is None:
            raise ValueError(f"cannot tell the event from object_kind {kind!r}; pass --event")

    if event not in EVENT_KINDS:
        known = ", ".join(sorted(set(EVENT_KINDS)))
        print(f"warning: {event!r} is not an event devops-agent handles ({known})", file=sys.stderr)
    settings = load_settings()
    if token is None:
        if not settings.webhook_secrets:
            raise ValueError("no WEBHOOK_SECRET to send: pass --token with the project's secret")
        token = settings.webhook_secrets[0].value
    key = idempotency_key or str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"GitLab/{GITLAB_VERSION}",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "Idempotency-Key": key,
    }
    project: dict[str, Any] = payload["project"] if isinstance(payload.get("project"), dict) else {}
    # The receiver compares X-Gitlab-Instance with GITLAB_URL when that is set.
    web_url = instance or settings.gitlab_url or str(project.get("web_url") or "")
    if web_url.startswith("http"):
        parts = urllib.parse.urlsplit(web_url)
        headers["X-Gitlab-Instance"] = f"{parts.scheme}://{parts.netloc}"
    if settings.webhook_signing_key is not None:
        stamp = int(time.time())
        k = signing_key_bytes(settings.webhook_signing_key.value)
        headers.update({"webhook-id": key, "webhook-timestamp": str(stamp),
                        "webhook-signature": signature_header(k, key, stamp, body)})
    return event, headers


def replay(args: argparse.Namespace) -> int:
    try:
        body = sys.stdin.buffer.read() if str(args.payload) == "-" else args.payload.read_bytes()
    except OSError as exc:
        print(f"devops-agent: cannot read {args.payload}: {exc.strerror}", file=sys.stderr)
        return 2
    if args.dry_run:
        # Lazy: the worker's handlers, Celery and the GitLab client load only for a dry run.
        from tasks.cli.dry_run import dry_run

        return dry_run(body, args.event)
    if not args.url:
        print("devops-agent: give --url to send the payload, or --dry-run to run it here",
              file=sys.stderr)
        return 2
    try:
        event, headers = build_request(body, args.event, args.idempotency_key, token=args.token)
    except (ValueError, ConfigError) as exc:
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        print(f"devops-agent: --url must be an http(s) URL, not {args.url!r}", file=sys.stderr)
        return 2
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname, url.port, timeout=args.timeout)
    try:
        conn.request("POST", url.path or "/", body=body, headers=headers)
        resp = conn.getresponse()
        answer = resp.read(64 * 1024).decode("utf-8", "replace")
    except OSError as exc:
        print(f"devops-agent: {args.url}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(f"{resp.status} {resp.reason} ({event}, Idempotency-Key {headers['Idempotency-Key']})")
    print(answer)
    return 0 if 200 <= resp.status < 300 else 1
