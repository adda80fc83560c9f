"""The receiver's HTTP server: a gunicorn worker that reads every request whole before the app
sees it (what a buffering proxy does in front of sync workers, inside the worker).

Why: gunicorn's sync worker hands its only thread to a connection as soon as it is accepted, so
two clients trickling their headers held both workers for 30 s, and GitLab's deliveries (10 s
timeout) failed meanwhile; after 4 failures GitLab pauses the hook. Here one event loop per
process multiplexes all connections with non-blocking sockets, and the WSGI app (which answers in
about a millisecond) runs only for a request that has arrived completely:

* the request head must arrive within HEADER_TIMEOUT_SECONDS (5 s) of the connection (or of the
  first byte of a kept-alive connection's next request), the body within BODY_TIMEOUT_SECONDS
  (10 s, GitLab's own timeout) of the head; a request that misses its deadline gets 408;
* a body over MAX_BODY_BYTES is refused with 413 from its Content-Length, or as soon as a chunked
  body passes the limit; the bytes one process buffers for unfinished requests are capped
  (MAX_BUFFERED_BYTES), past which a request is refused with 503 (resend) instead of growing;
* a malformed request (request line, headers, framing, chunked encoding, a body that ends early)
  gets a JSON 4xx; gunicorn's own HTML error pages are never sent;
* connections are kept alive (`keepalive` seconds between requests), which the sync worker never
  does; the app gets a complete body (a chunked one decoded) in `wsgi.input`.

The request head is parsed by gunicorn's own parser (the same strict checks and settings as any
gunicorn worker: limit_request_line, header_map, forwarded_allow_ips, ...), and the environ and
the response are gunicorn's too; only the I/O is different. Reading a request from the buffered
bytes (head, Content-Length or chunked body, refusals) is webhooks/framing.py. TLS is not terminated here (the
ingress does that), and the app runs in the loop's thread, one request at a time, as in a sync
worker: the receiver's app does not wait for anything but its one Redis call.

What is left here (over 350 lines) is one event loop: accepting, reading, answering, writing and
lingering all change the same connection table, selector registrations and buffered-bytes
budget, and each step hands a connection to the next; split across modules, a reader would
have to follow one connection's life through all of them.
"""

from __future__ import annotations

import errno
import gc
import io
import logging
import os
import selectors
import socket
import time
from datetime import datetime
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http import wsgi
from gunicorn.workers import base

from tasks.config.settings import server_limits
from tasks.platform import metrics
from webhooks.framing import (
    BODY,
    HEAD,
    LINGER,
    WRITE,
    Conn,
    Refusal,
    json_error,
    parse_error,
    read_body,
    read_head,
)

READ_SIZE = 256 * 1024
WRITE_TIMEOUT = 10.0  # for the client to take our answer
LINGER_SECONDS = 2.0  # after the last answer on a connection we close, for the client to take it
LINGER_DISCARD = 4 * 1024 * 1024  # unread request bytes thrown away while lingering, at most
MAX_KEEPALIVE_REQUESTS = 10_000
SWEEP_INTERVAL = 0.1  # how often deadlines are checked


class _Out:
    """The socket gunicorn's Response writes to: it appends to the connection's output buffer,
    which the loop sends without blocking."""

    def __init__(self, buf: bytearray) -> None:
        self.buf = buf

    def sendall(self, data: bytes) -> None:
        self.buf += data

    def send(self, data: bytes) -> int:
        self.buf += data
        return len(data)


class BufferingWorker(base.Worker):
    """See the module docstring. Configure with `worker_class = "webhooks.worker.BufferingWorker"`."""

    alive: bool  # gunicorn's base Worker sets it; declared for the type checker

    def init_process(self) -> None:
        if self.cfg.is_ssl:
            raise RuntimeError("webhooks.worker.BufferingWorker does not terminate TLS; "
                               "terminate it in front (ingress, load balancer)")
        self.limits = server_limits()
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}
        self.held = 0
        self.accepting = False
        self._paused_until = 0.0
        self._last_notify = 0.0
        # Our JSON lines carry none of these; not looking them up saves ~15 us per line (the
        # logging HOWTO's "Optimization"). A web worker process only; Celery's format uses them.
        logging._srcfile = None
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        # gunicorn builds an access-log line's atoms whenever a logging config is given, even
        # when its access logger discards INFO (ours: ~50 us per request for nothing).
        access = getattr(self.log, "access_log", None)
        self._access = bool(self.log.access_log_enabled and access is not None
                            and access.isEnabledFor(logging.INFO))
        super().init_process()

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        # The app and its imports are ~55,000 long-lived objects: a full collection of them
        # takes ~15 ms, which every request waiting on this worker would pay (p99). Frozen,
        # the collector skips them.
        gc.collect()
        gc.freeze()
        for s in self.sockets:
            s.setblocking(False)
        self.sel.register(self.PIPE[0], selectors.EVENT_READ, None)
        self._set_accepting(True)
        next_sweep = 0.0
        stop_by: float | None = None
        while True:
            now = time.monotonic()
            if now - self._last_notify > 0.5:
                self.notify()
                self._last_notify = now
            if not self.alive:
                if stop_by is None:  # stop accepting; finish what is in flight
                    stop_by = now + self.cfg.graceful_timeout
                    self._set_accepting(False)
                    for conn in list(self.conns.values()):
                        if conn.state == HEAD and conn.idle:
                            self._close(conn)
                if not self.conns or now > stop_by:
                    break
            else:
                self._set_accepting(len(self.conns) < self.cfg.worker_connections
                                    and now >= self._paused_until)
            try:
                events = self.sel.select(SWEEP_INTERVAL if self.conns else 1.0)
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    raise
                events = []
            for key, mask in events:
                conn = key.data
                if conn is None:  # the wake-up pipe (signals)
                    try:
                        while os.read(self.PIPE[0], 4096):
                            pass
                    except OSError:
                        pass
                elif isinstance(conn, Conn):
                    try:
                        if mask & selectors.EVENT_WRITE:
                            self._flush(conn)
                            if conn.state == HEAD and conn.buf and self.conns.get(
                                    conn.sock.fileno()) is conn:
                                self._advance(conn)  # pipelined requests waited for this answer
                        elif mask & selectors.EVENT_READ:
                            self._readable(conn)
                    except Exception:  # a bug here costs one connection, not all
                        self.log.exception("Error on a connection; closing it")
                        self._close(conn)
                else:
                    self._accept(key.fileobj)
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + SWEEP_INTERVAL
                self._sweep(now)
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    self.alive = False
        for conn in list(self.conns.values()):
            self._close(conn)
        self.sel.close()

    def _set_accepting(self, on: bool) -> None:
        if on == self.accepting:
            return
        for s in self.sockets:
            if on:
                self.sel.register(s, selectors.EVENT_READ, "listener")
            else:
                self.sel.unregister(s)
        self.accepting = on

    def _accept(self, listener: Any) -> None:
        for _ in range(16):
            try:
                sock, addr = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    # the listener stays readable: pause accepting, or this loop would spin
                    self.log.error("out of file descriptors; not accepting for a second")
                    self._paused_until = time.monotonic() + 1.0
                    self._set_accepting(False)
                    return
                raise
            sock.setblocking(False)
            util.close_on_exec(sock)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock, addr, listener.getsockname(),
                        time.monotonic() + self.limits.header_timeout)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)
            if len(self.conns) >= self.cfg.worker_connections:
                return

    def _sweep(self, now: float) -> None:
        for conn in list(self.conns.values()):
            if now < conn.deadline:
                continue
            if conn.state == HEAD and conn.idle:
                self._close(conn)  # nothing was asked (or a kept-alive connection went quiet)
            elif conn.state in (HEAD, BODY):
                limit = self.limits.header_timeout if conn.state == HEAD else self.limits.body_timeout
                part = "request head" if conn.state == HEAD else "request body"
                self._refuse(conn, Refusal(408, "timeout",
                                           f"the {part} did not arrive within {limit:g} s"))
            else:  # the client does not take our answer, or lingering is over
                self._close(conn)

    # -- reading -------------------------------------------------------------------------------
    def _readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if conn.state == LINGER:
            conn.discarded += len(data)
            if not data or conn.discarded > LINGER_DISCARD:
                self._close(conn)
            return
        if not data:
            if conn.state == HEAD and conn.idle and not conn.buf:
                self._close(conn)  # the client is done with this connection
            else:
                self._refuse(conn, Refusal(400, "bad_request",
                                           "the connection ended before the request was complete"))
            return
        conn.buf += data
        self._hold(conn, len(data))
        if conn.held and self.held > self.limits.max_buffered_bytes:
            self._refuse(conn, Refusal(503, "busy", "too many large requests at once; resend"),
                         word="unavailable")
            return
        self._advance(conn)

    def _hold(self, conn: Conn, n: int) -> None:
        conn.held += n
        self.held += n

    def _release(self, conn: Conn) -> None:
        self.held -= conn.held
        conn.held = 0

    def _advance(self, conn: Conn) -> None:
        """Move a connection's request forward with what is buffered; run the app when whole."""
        try:
            while True:
                if conn.state == HEAD and not read_head(conn, self.cfg, self.limits):
                    return
                if conn.state == BODY:
                    body = read_body(conn, self.limits.max_body_bytes)
                    if body is None:
                        return
                    self._respond(conn, body)
                    # the next pipelined request, in this loop (not by recursion): unless the
                    # answer is still being written, or nothing more has arrived
                    if conn.state != HEAD or not conn.buf:
                        return
        except Refusal as refusal:
            self._refuse(conn, refusal)

    # -- answering -----------------------------------------------------------------------------
    def _respond(self, conn: Conn, body: bytes) -> None:
        """Run the app on a complete request; its answer goes into conn.out and is sent."""
        req = conn.req
        assert req is not None
        self._release(conn)
        self._hold(conn, len(conn.buf))  # what is left is the next (pipelined) request
        environ: dict[str, Any] = {}
        resp = None
        out = conn.out
        try:
            self.cfg.pre_request(self, req)
            started = datetime.now()
            resp, environ = wsgi.create(req, _Out(out), conn.addr, conn.server, self.cfg)
            environ["wsgi.input"] = io.BytesIO(body)
            self.nr += 1
            if self.nr >= self.max_requests:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if (not self.alive or not self.cfg.keepalive
                    or conn.nreq >= MAX_KEEPALIVE_REQUESTS):
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                if self._access:
                    self.log.access(resp, req, environ, datetime.now() - started)
                if hasattr(respiter, "close"):
                    respiter.close()
            conn.close_after = resp.should_close()
        except Exception:  # the app's own errors are answered by the app
            self.log.exception("Error handling request")
            if resp is None or not resp.headers_sent:
                del out[:]
                out += json_error(500, "internal error", "error")
            conn.close_after = True
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        conn.req = None
        conn.state = WRITE
        self._flush(conn)

    def _refuse(self, conn: Conn, refusal: Refusal, word: str = "refused") -> None:
        if conn.state in (WRITE, LINGER):
            self._close(conn)
            return
        self._count(refusal.outcome)
        self.log.info("refused: %s", refusal, extra={"status": refusal.status,
                                                     "outcome": refusal.outcome})
        self._release(conn)
        conn.buf = bytearray()
        conn.chunks = []
        conn.out += json_error(refusal.status, str(refusal), word)
        conn.close_after = True
        conn.linger = True  # the client may still be sending what we refused
        conn.state = WRITE
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        out = conn.out
        while conn.sent < len(out):
            try:
                with memoryview(out) as view:
                    n = conn.sock.send(view[conn.sent:])
            except (BlockingIOError, InterruptedError):
                if conn.events != selectors.EVENT_WRITE:
                    conn.deadline = time.monotonic() + WRITE_TIMEOUT
                    self._watch(conn, selectors.EVENT_WRITE)
                return
            except OSError:
                self._close(conn)
                return
            conn.sent += n
        del out[:]
        conn.sent = 0
        now = time.monotonic()
        if conn.close_after and not conn.linger and not conn.buf:
            # The whole request was read and nothing else was sent: closing now cannot reset
            # the connection under an answer the client has not read yet.
            self._close(conn)
            return
        if conn.close_after:
            conn.state = LINGER
            conn.deadline = now + LINGER_SECONDS
            self._release(conn)
            conn.buf = bytearray()
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
        else:
            conn.reset(now + self.cfg.keepalive)
        self._watch(conn, selectors.EVENT_READ)

    def _watch(self, conn: Conn, events: int) -> None:
        if conn.events != events:
            conn.events = events
            self.sel.modify(conn.sock, events, conn)

    def _close(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        if fd < 0 or self.conns.get(fd) is not conn:
            return
        del self.conns[fd]
        self._release(conn)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        util.close(conn.sock)

    def _count(self, outcome: str) -> None:
        try:
            metrics.DELIVERIES.labels(event="other", outcome=outcome).inc()
        except Exception:  # noqa: BLE001 - metrics must never break an answer
            pass

    def handle_error(self, req, client, addr, exc):  # gunicorn's signature
        """Not reached through this worker's loop; JSON rather than gunicorn's HTML if it is."""
        refusal = parse_error(exc) if isinstance(exc, http_errors.ParseException) else \
            Refusal(500, "error", "internal error")
        try:
            client.sendall(json_error(refusal.status, str(refusal)))
        except OSError:
            pass
