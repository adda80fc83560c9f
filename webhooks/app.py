"""The receiver: verify, acknowledge, enqueue. No GitLab or Kubernetes call happens in a request.

GitLab does not re-send a failed delivery and pauses a hook after 4 failures in a row (dropping
events meanwhile), so we answer 4xx only for real misconfiguration, 2xx for anything safe to
accept or ignore, and 503 only when we could not make the delivery durable (the user can resend).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson
import redis
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from werkzeug.exceptions import HTTPException

from tasks.config.settings import Settings, load_settings, signing_key_bytes
from tasks.incidents import intake as alert_intake
from tasks.intake.inbox import Inbox
from tasks.intake.kinds import OBJECT_KINDS, kind_of
from tasks.platform import audit, metrics
from tasks.platform.audit import parse_since
from tasks.platform.logs import configure_logging, log_context
from tasks.platform.sentry import init_sentry
from webhooks.verify import (
    TokenVerifier,
    VerificationError,
    check_instance,
    check_signature,
    check_token,
    origin,
    project_named,
)

log = logging.getLogger("devops_agent.webhooks")

JSON_TYPES = ("application/json",)
# Headers GitLab sends with a delivery that are worth keeping with the record (never the token).
KEPT_HEADERS = ("X-Gitlab-Webhook-UUID", "X-Gitlab-Event-UUID", "X-Gitlab-Instance", "User-Agent")
# The same as WSGI environ keys: read straight from the environ, one dict lookup each.
_KEPT = tuple((h, "HTTP_" + h.upper().replace("-", "_")) for h in KEPT_HEADERS)


def reply(code: int, **body: Any) -> Response:
    return Response(orjson.dumps(body), status=code, mimetype="application/json")


class BodyError(Exception):
    """The body could not be read: a malformed chunked encoding, or the client stopped early."""


def read_body(limit: int) -> bytes | None:
    """The raw body, or None past `limit`. A chunked body (no Content-Length) is read in pieces
    and abandoned at the limit, so a hostile sender cannot make us buffer more than that.
    (webhooks/worker.py hands the app whole, decoded bodies; this is for any other server.)"""
    try:
        if request.content_length is not None:
            return request.get_data(cache=False)
        if not request.environ.get("wsgi.input_terminated"):
            return b""  # the server cannot tell where the body ends; treat it as absent
        stream = request.environ["wsgi.input"]
        buf = bytearray()
        while chunk := stream.read(64 * 1024):
            buf += chunk
            if len(buf) > limit:
                return None
        return bytes(buf)
    except HTTPException:
        raise  # werkzeug's own 400 (client disconnected) and 413
    except Exception as exc:  # noqa: BLE001 - gunicorn's InvalidChunkSize, NoMoreData, OSError...
        raise BodyError(type(exc).__name__) from None


class _Key:
    __slots__ = ("key",)

    def __init__(self, key: bytes | None) -> None:
        self.key = key

    def __repr__(self) -> str:
        return "_Key(**********)"


class _Secrets:
    """Configured secrets, kept out of the view function's locals (as `_Key` is)."""

    __slots__ = ("values",)

    def __init__(self, values: list[str]) -> None:
        self.values = values

    def __repr__(self) -> str:
        return f"_Secrets({len(self.values)} x **********)"


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set; `devops-agent serve` provides an embedded Redis")
    configure_logging(settings.log_level, settings.secret_values())
    init_sentry(settings, "web")

    app = Flask("devops_agent")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Flask would answer OPTIONS itself with an empty text/html 200; every answer here is JSON
    # (an OPTIONS request gets 405 like any other method a route does not take).
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    verifier = TokenVerifier([s.value for s in settings.webhook_secrets], settings.webhook_bindings)
    instance = origin(settings.gitlab_url) if settings.gitlab_url else None
    # The decoded key lives in this holder, not in a local of `receive` that an error
    # reporter could capture with the frame (tasks/platform/sentry.py also turns that off).
    signing = _Key(signing_key_bytes(settings.webhook_signing_key.value)
                   if settings.webhook_signing_key else None)
    client = redis.Redis.from_url(settings.redis_url.replace("redis+socket://", "unix://"),
                                  socket_timeout=2, socket_connect_timeout=1)
    inbox = Inbox(client, queue=settings.task_queue, dedup_ttl=settings.dedup_ttl_seconds,
                  redeliver_after=settings.redeliver_after_seconds,
                  retention=settings.inbox_retention_seconds)

    def refuse(status: int, event: str, outcome: str, message: str) -> Response:
        metrics.DELIVERIES.labels(event=event, outcome=outcome).inc()
        log.info("refused: %s", message, extra={"status": status, "outcome": outcome})
        return reply(status, status="refused", error=message)

    @app.post("/webhooks/gitlab")
    def receive() -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]
        env = req.environ
        event = env.get("HTTP_X_GITLAB_EVENT", "")
        idem = env.get("HTTP_IDEMPOTENCY_KEY") or env.get("HTTP_WEBHOOK_ID")
        label = event if kind_of(event) else "other"
        with log_context(idempotency_key=idem, event=event or None):
            try:
                hits = verifier.match(env.get("HTTP_X_GITLAB_TOKEN"))
                check_instance(env.get("HTTP_X_GITLAB_INSTANCE"), instance)
            except VerificationError as exc:
                metrics.VERIFICATION_FAILURES.labels(reason=exc.reason).inc()
                return refuse(401, label, exc.reason, str(exc))
            if not event:
                return refuse(400, label, "no_event", "missing X-Gitlab-Event header")
            if req.mimetype not in JSON_TYPES:
                return refuse(415, label, "content_type",
                              f"Content-Type must be application/json, not {req.mimetype[:100] or 'empty'!r}")
            length = req.content_length
            if length is not None and length > settings.max_body_bytes:
                return refuse(413, label, "too_large",
                              f"body of {length} bytes exceeds the limit of {settings.max_body_bytes}")
            try:
                body = read_body(settings.max_body_bytes)
            except BodyError as exc:
                return refuse(400, label, "bad_body", f"the body could not be read ({exc})")
            if body is None:
                return refuse(413, label, "too_large",
                              f"chunked body exceeds the limit of {settings.max_body_bytes} bytes")
            if signing.key is not None:
                try:
                    check_signature(req.headers, body, signing.key)
                except VerificationError as exc:
                    metrics.VERIFICATION_FAILURES.labels(reason=exc.reason).inc()
                    return refuse(401, label, exc.reason, str(exc))
            kind = kind_of(event)
            if kind is None:
                metrics.DELIVERIES.labels(event="other", outcome="ignored").inc()
                log.info("ignored: event kind not handled")
                return reply(202, status="ignored", reason=f"event {event[:100]!r} is not handled")
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return refuse(400, label, "bad_json", f"body is not valid JSON: {exc.msg}")
            if not isinstance(payload, dict):
                return refuse(400, label, "bad_json", "body must be a JSON object")
            object_kind = payload.get("object_kind")
            if object_kind is not None and (not isinstance(object_kind, str)
                                            or OBJECT_KINDS.get(object_kind) != kind):
                shown = object_kind if isinstance(object_kind, str) else type(object_kind).__name__
                return refuse(400, label, "kind_mismatch",
                              f"X-Gitlab-Event is {event[:100]!r} but object_kind is {shown[:50]!r}")
            try:
                path, project_id = project_named(payload)
            except ValueError as exc:
                return refuse(400, label, "bad_project", str(exc))
            bound_to = verifier.bound_to(hits, path, project_id)
            if bound_to is None:
                reason = "token_wrong_project"
                metrics.VERIFICATION_FAILURES.labels(reason=reason).inc()
                return refuse(401, label, reason,
                              "X-Gitlab-Token is not valid for the project this delivery names"
                              if path or project_id is not None else
                              "X-Gitlab-Token is bound to projects and this delivery names none")
            meta = {h: env[k] for h, k in _KEPT if k in env}
            meta["bound_to"] = bound_to
            started = time.perf_counter()
            try:
                accepted = inbox.accept(event=event, kind=kind, body=body, idempotency_key=idem,
                                        meta=meta)
            except redis.RedisError as exc:
                log.error("broker unreachable: %s: %s", type(exc).__name__, exc)
                metrics.DELIVERIES.labels(event=label, outcome="unavailable").inc()
                return reply(503, status="unavailable",
                             error="the queue is unreachable; the delivery was not accepted, resend it")
            metrics.ENQUEUE_SECONDS.observe(time.perf_counter() - started)
            if accepted.duplicate:
                metrics.DELIVERIES.labels(event=label, outcome="duplicate").inc()
                log.info("duplicate delivery", extra={"delivery_id": accepted.delivery_id})
                return reply(200, status="duplicate", delivery_id=accepted.delivery_id)
            metrics.DELIVERIES.labels(event=label, outcome="queued").inc()
            log.info("queued", extra={"delivery_id": accepted.delivery_id, "bytes": len(body),
                                      "bound_to": bound_to})
            return reply(202, status="queued", delivery_id=accepted.delivery_id)

    alert_tokens = _Secrets([t.value for t in settings.alertmanager_tokens])
    alert_basic = _Secrets([settings.alertmanager_basic_auth.value]
                           if settings.alertmanager_basic_auth else [])

    @app.post("/webhooks/alertmanager")
    def receive_alerts() -> Response:
        """Alertmanager's webhook: authenticate, check, record through the same inbox as GitLab
        hooks (deduplicated by group, status and alerts), acknowledge; a worker handles it."""
        req = request._get_current_object()  # type: ignore[attr-defined]
        label = alert_intake.KIND
        try:
            scheme = alert_intake.check_auth(req.headers.get("Authorization"), alert_tokens.values,
                                             alert_basic.values)
        except alert_intake.AuthError as exc:
            metrics.VERIFICATION_FAILURES.labels(reason="alertmanager_" + exc.reason).inc()
            answer = refuse(401, label, exc.reason, str(exc))
            answer.headers["WWW-Authenticate"] = 'Bearer realm="devops-agent", Basic realm="devops-agent"'
            return answer
        if req.mimetype not in JSON_TYPES:
            return refuse(415, label, "content_type",
                          f"Content-Type must be application/json, not {req.mimetype[:100] or 'empty'!r}")
        limit = settings.alertmanager_max_body_bytes
        length = req.content_length
        if length is not None and length > limit:
            return refuse(413, label, "too_large", f"body of {length} bytes exceeds the limit of {limit}")
        try:
            body = read_body(limit)
        except BodyError as exc:
            return refuse(400, label, "bad_body", f"the body could not be read ({exc})")
        if body is None or len(body) > limit:
            return refuse(413, label, "too_large", f"body exceeds the limit of {limit} bytes")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return refuse(400, label, "bad_json", f"body is not valid JSON: {exc.msg}")
        try:
            alert_intake.validate(payload)
        except alert_intake.PayloadError as exc:
            return refuse(exc.status, label, "bad_payload", str(exc))
        key = alert_intake.dedup_key(payload)
        meta = {"bound_to": "alertmanager", "auth": scheme,
                "User-Agent": req.headers.get("User-Agent", "")[:200]}
        try:
            accepted = inbox.accept(event=alert_intake.EVENT, kind=alert_intake.KIND, body=body,
                                    idempotency_key=key, meta=meta)
        except redis.RedisError as exc:
            log.error("broker unreachable: %s: %s", type(exc).__name__, exc)
            metrics.DELIVERIES.labels(event=label, outcome="unavailable").inc()
            return reply(503, status="unavailable",
                         error="the queue is unreachable; the notification was not accepted")
        if accepted.duplicate:
            metrics.DELIVERIES.labels(event=label, outcome="duplicate").inc()
            return reply(200, status="duplicate", delivery_id=accepted.delivery_id)
        metrics.DELIVERIES.labels(event=label, outcome="queued").inc()
        log.info("queued", extra={"delivery_id": accepted.delivery_id, "bytes": len(body),
                                  "alerts": len(payload["alerts"])})
        return reply(202, status="queued", delivery_id=accepted.delivery_id)

    @app.get("/healthz")
    def healthz() -> Response:
        return reply(200, status="ok")

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            client.ping()
        except redis.RedisError as exc:
            return reply(503, status="unavailable", error=f"broker: {type(exc).__name__}")
        return reply(200, status="ready")

    @app.get("/metrics")
    def metrics_view() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = REGISTRY
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/audit")
    def audit_view() -> Response:
        """The ChatOps audit trail, newest first; needs AUDIT_TOKEN as a Bearer token."""
        if settings.audit_token is None:
            return reply(404, status="refused", error="set AUDIT_TOKEN to enable /audit")
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        try:
            check_token(given.decode(errors="replace"), [settings.audit_token.value.encode()])
        except VerificationError as exc:
            return reply(401, status="refused", error=str(exc).replace("X-Gitlab-Token",
                                                                       "Authorization: Bearer"))
        try:
            since = parse_since(request.args.get("since"))
            limit = min(1000, max(1, int(request.args.get("limit", "100"))))
        except ValueError as exc:
            return reply(400, status="refused", error=str(exc))
        try:
            entries = audit.query(client, project=request.args.get("project"), since=since,
                                  limit=limit)
        except redis.RedisError:
            return reply(503, status="unavailable", error="the store is unreachable")
        return reply(200, entries=entries)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code == 413:
            metrics.DELIVERIES.labels(event="other", outcome="too_large").inc()
        return reply(exc.code or 500, status="refused", error=exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # Logged (and sent to Sentry) in full; the caller gets no stack trace.
        log.exception("unexpected error")
        return reply(500, status="error", error="internal error")

    return app
