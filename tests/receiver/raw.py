"""Raw HTTP/1.1 over a socket, for what no HTTP client library sends: trickled, truncated,
malformed and pipelined requests. `exchange` sends bytes and parses every answer that comes back."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import orjson


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return orjson.loads(self.body)


@dataclass
class Exchange:
    answers: list[Answer] = field(default_factory=list)
    rest: bytes = b""  # bytes that did not parse as an answer
    closed: bool = False  # the server closed the connection
    seconds: float = 0.0


def parse_answers(data: bytes) -> tuple[list[Answer], bytes]:
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            break
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if 100 <= status < 200:
            data = data[start:]
            continue
        length = int(headers.get("content-length", "0"))
        if len(data) < start + length:
            break
        out.append(Answer(status, headers, data[start:start + length]))
        data = data[start + length:]
    return out, data


def exchange(port: int, data: bytes | list[bytes], *, half_close: bool = True,
             timeout: float = 5.0, pause: float = 0.0) -> Exchange:
    """Send `data` (pieces `pause` seconds apart), optionally half-close, read until the server
    closes or `timeout`."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    received = b""
    closed = False
    try:
        for i, piece in enumerate([data] if isinstance(data, bytes) else data):
            if i and pause:
                time.sleep(pause)
            try:
                sock.sendall(piece)
            except OSError:
                break  # the server already answered and closed
        if half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        deadline = started + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    finally:
        sock.close()
    answers, rest = parse_answers(received)
    return Exchange(answers, rest, closed, time.monotonic() - started)


def request(body: bytes = b"", *, token: str, event: str = "Pipeline Hook", extra: bytes = b"",
            path: str = "/webhooks/gitlab", close: bool = False) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Gitlab-Token: {token}\r\n"
            f"X-Gitlab-Event: {event}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode()
    if close:
        head += b"Connection: close\r\n"
    return head + extra + b"\r\n" + body
