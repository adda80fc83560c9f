"""One HTTP/1.1 request read from a connection's buffered bytes, for webhooks/worker.py's loop.

The head is parsed by gunicorn's own parser (its limits and checks), the body is taken by its
Content-Length or decoded from chunked framing as it arrives, never past the body limit; what
cannot be read is a Refusal, answered with a JSON body and then the connection is closed.
"""

from __future__ import annotations

import re
import selectors
import socket
import time
from typing import Any

import orjson
from gunicorn.http import errors as http_errors
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader

from tasks.config.settings import ServerLimits

MAX_HEAD_BYTES = 64 * 1024  # the whole head; gunicorn's per-line and per-field limits apply too
MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions
MAX_TRAILER_BYTES = 8 * 1024
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")

STATUS_TEXT = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
               413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
               431: "Request Header Fields Too Large", 500: "Internal Server Error",
               503: "Service Unavailable"}

# connection states
HEAD, BODY, WRITE, LINGER = "head", "body", "write", "linger"


class Refusal(Exception):
    """A request this server answers itself, with a JSON body, and then closes the connection."""

    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status, self.outcome = status, outcome


def json_error(status: int, message: str, word: str = "refused") -> bytes:
    body = orjson.dumps({"status": word, "error": message})
    head = (f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


def parse_error(exc: BaseException) -> Refusal:
    """gunicorn's parser exceptions as JSON refusals (its own handler would write HTML). The
    message names the problem, never the header's value (it may be a token)."""
    e = http_errors
    if isinstance(exc, e.LimitRequestLine):
        return Refusal(414, "bad_request", "the request line is too long")
    if isinstance(exc, e.LimitRequestHeaders):
        return Refusal(431, "bad_request", "too many or too large request headers")
    if isinstance(exc, e.ExpectationFailed):
        return Refusal(417, "bad_request", "only `Expect: 100-continue` is understood")
    if isinstance(exc, e.ForbiddenProxyRequest):
        return Refusal(403, "bad_request", "PROXY protocol line from an untrusted address")
    what = {
        e.InvalidRequestLine: "a malformed request line",
        e.InvalidRequestMethod: "an invalid request method",
        e.InvalidHTTPVersion: "an unsupported HTTP version",
        e.InvalidHeaderName: "an invalid header name",
        e.ObsoleteFolding: "a folded header line",
        e.InvalidHeader: "an invalid or repeated header",
        e.UnsupportedTransferCoding: "an unsupported Transfer-Encoding",
        e.InvalidSchemeHeaders: "contradicting scheme headers",
        e.InvalidProxyLine: "a malformed PROXY protocol line",
        e.InvalidProxyHeader: "a malformed PROXY protocol header",
    }
    for cls, text in what.items():
        if isinstance(exc, cls):
            return Refusal(400, "bad_request", f"malformed request: {text}")
    return Refusal(400, "bad_request", f"malformed request ({type(exc).__name__})")


class Conn:
    __slots__ = (
        "addr",
        "buf",
        "chunked",
        "chunks",
        "cleft",
        "close_after",
        "cstate",
        "deadline",
        "decoded",
        "discarded",
        "events",
        "held",
        "idle",
        "length",
        "linger",
        "nreq",
        "out",
        "req",
        "sent",
        "server",
        "sock",
        "started",
        "state",
        "trailer",
    )

    def __init__(self, sock: socket.socket, addr: Any, server: Any, deadline: float) -> None:
        self.sock, self.addr, self.server = sock, addr, server
        self.buf = bytearray()
        self.out = bytearray()
        self.sent = 0
        self.nreq = 0
        self.events = selectors.EVENT_READ
        self.held = 0  # request bytes buffered, counted against MAX_BUFFERED_BYTES
        self.discarded = 0
        self.close_after = False
        self.linger = False  # after the last answer, wait for the client to close first
        self.reset(deadline)

    def reset(self, deadline: float) -> None:
        """Ready for the next request (the first one, or the next on a kept-alive connection)."""
        self.state = HEAD
        self.deadline = deadline
        self.idle = True  # no byte of this request yet
        self.req: Request | None = None
        self.length = 0
        self.chunked = False
        self.chunks: list[bytes] = []
        self.decoded = 0
        self.cstate = "size"
        self.cleft = 0
        self.trailer = 0
        self.started = 0.0


def read_head(conn: Conn, cfg: Any, limits: ServerLimits) -> bool:
    """Parse the head once it has arrived whole; False while it has not."""
    buf = conn.buf
    if conn.idle and buf:
        conn.idle = False
        conn.started = time.monotonic()
        if conn.nreq:  # a kept-alive connection's next request: its own head deadline
            conn.deadline = conn.started + limits.header_timeout
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise Refusal(431, "bad_request", "the request head is too large")
        if buf.count(b"\n") != buf.count(b"\r\n"):
            raise Refusal(400, "bad_request", "malformed request: a bare LF ends a line")
        return False
    if end > MAX_HEAD_BYTES:
        raise Refusal(431, "bad_request", "the request head is too large")
    head = bytes(buf[:end + 4])
    del buf[:end + 4]
    conn.nreq += 1
    try:
        req = Request(cfg, IterUnreader((head,)), conn.addr, conn.nreq)
    except (http_errors.ParseException, http_errors.NoMoreData, StopIteration,
            ValueError, UnicodeError) as exc:
        raise parse_error(exc) from None
    reader = req.body.reader
    if isinstance(reader, ChunkedReader):
        conn.chunked = True
    elif isinstance(reader, LengthReader):
        conn.length = reader.length
        if conn.length > limits.max_body_bytes:
            raise Refusal(413, "too_large", f"body of {conn.length} bytes exceeds the limit "
                                            f"of {limits.max_body_bytes}")
    else:  # pragma: no cover - gunicorn gives requests one of the two readers
        raise Refusal(400, "bad_request", "the body's length cannot be determined")
    if req._expected_100_continue:
        req._expected_100_continue = False  # gunicorn would send it into the answer
        if (conn.chunked or conn.length) and not buf:
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass
    conn.req = req
    conn.state = BODY
    conn.deadline = time.monotonic() + limits.body_timeout
    return True


def read_body(conn: Conn, limit: int) -> bytes | None:
    """The whole (decoded) body once it has arrived, else None."""
    buf = conn.buf
    if not conn.chunked:
        if len(buf) < conn.length:
            return None
        body = bytes(buf[:conn.length])
        del buf[:conn.length]
        return body
    pos = 0
    try:
        while True:
            if conn.cstate == "size":
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if len(buf) - pos > MAX_CHUNK_LINE:
                        raise Refusal(400, "bad_request", "malformed chunked body: a chunk "
                                                          "size line is too long")
                    return None
                line = bytes(buf[pos:nl])
                pos = nl + 2
                size, _, ext = line.partition(b";")
                size = size.rstrip(b" \t")
                if not _HEX.fullmatch(size) or b"\n" in line or b"\r" in ext:
                    raise Refusal(400, "bad_request", "malformed chunked body: an invalid "
                                                      "chunk size")
                n = int(size, 16)
                if n == 0:
                    conn.cstate = "trailer"
                elif conn.decoded + n > limit:
                    raise Refusal(413, "too_large",
                                  f"chunked body exceeds the limit of {limit} bytes")
                else:
                    conn.cleft = n
                    conn.cstate = "data"
            elif conn.cstate == "data":
                take = min(len(buf) - pos, conn.cleft)
                if take <= 0:
                    return None
                conn.chunks.append(bytes(buf[pos:pos + take]))
                pos += take
                conn.cleft -= take
                conn.decoded += take
                if conn.cleft:
                    return None
                conn.cstate = "crlf"
            elif conn.cstate == "crlf":
                if len(buf) - pos < 2:
                    return None
                if buf[pos:pos + 2] != b"\r\n":
                    raise Refusal(400, "bad_request", "malformed chunked body: chunk data "
                                                      "is not followed by CRLF")
                pos += 2
                conn.cstate = "size"
            else:  # trailer fields, then an empty line; read and dropped
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if conn.trailer + len(buf) - pos > MAX_TRAILER_BYTES:
                        raise Refusal(400, "bad_request", "the chunked body's trailer is "
                                                          "too large")
                    return None
                if nl == pos:
                    pos += 2
                    body = b"".join(conn.chunks)
                    conn.chunks = []
                    return body
                conn.trailer += nl + 2 - pos
                if conn.trailer > MAX_TRAILER_BYTES or b"\n" in buf[pos:nl]:
                    raise Refusal(400, "bad_request", "malformed chunked body trailer")
                pos = nl + 2
    finally:
        del buf[:pos]
