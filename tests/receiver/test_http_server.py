"""The receiver's HTTP server (webhooks/worker.py) under real gunicorn: slow clients cannot starve
it, malformed requests get JSON 4xx (never gunicorn's HTML pages), bodies are whole for the app."""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid

import orjson
import pytest
import requests

from tasks.platform.redis_server import free_port
from tests.receiver.raw import exchange, parse_answers, request
from tests.support.procs import SECRET, Proc, base_env, post_delivery, start_web, wait_until

TIMEOUT = 2  # HEADER_TIMEOUT_SECONDS and BODY_TIMEOUT_SECONDS for these servers
BODY = orjson.dumps({"object_kind": "pipeline", "object_attributes": {"id": 1, "status": "failed"},
                     "project": {"id": 15, "path_with_namespace": "acme/shop"}})


@pytest.fixture(scope="module")
def server(redis_server, tmp_path_factory):
    env = base_env(redis_server.client_url(), HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
                   BODY_TIMEOUT_SECONDS=str(TIMEOUT), MAX_BODY_BYTES="100000",
                   MAX_BUFFERED_BYTES="150000")
    proc, url = start_web(env, tmp_path_factory.mktemp("web"), workers=2)
    yield proc, int(url.rsplit(":", 1)[1])
    proc.stop()


@pytest.fixture
def web(server, redis_client):
    return server


class Trickler(threading.Thread):
    """A client that sends its request one small piece at a time, forever (or until cut off)."""

    def __init__(self, port: int, head: bytes, then: bytes, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.port, self.head, self.then, self.every = port, head, then, every
        self.answer = b""
        self.ended_after: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.settimeout(self.every)
        try:
            sock.sendall(self.head)
            for i in range(10_000):
                try:
                    sock.sendall(self.then[i % len(self.then):][:1])
                except OSError:
                    break
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self.answer += data
            # read what is left of the answer, if any
            sock.settimeout(1)
            try:
                while data := sock.recv(65536):
                    self.answer += data
            except OSError:
                pass
        finally:
            self.ended_after = time.monotonic() - started
            sock.close()


def slow_clients(port: int) -> list[Trickler]:
    heads = [Trickler(port, b"POST /webhooks/gitlab HTTP/1.1\r\n", b"X-Slow: aaaaaaaaaaaa\r\n")
             for _ in range(4)]
    bodies = [Trickler(port, request(b" " * 50_000, token=SECRET)[:-50_000], b" ")
              for _ in range(4)]
    for t in heads + bodies:
        t.start()
    return heads + bodies


def test_slow_clients_cannot_starve_the_receiver(web):
    _proc, port = web
    url = f"http://127.0.0.1:{port}"
    slow = slow_clients(port)  # 8 slow connections against 2 worker processes
    time.sleep(0.5)
    latencies = []
    for n in range(10):
        started = time.monotonic()
        r = post_delivery(url, BODY + b" " * n, "Pipeline Hook", key=str(uuid.uuid4()))
        latencies.append(time.monotonic() - started)
        assert r.status_code == 202, r.text
    assert max(latencies) < 1.0, latencies
    for t in slow:
        t.join(timeout=TIMEOUT + 5)
        assert not t.is_alive(), "a slow client was not cut off"
        # cut off within a bounded time: its deadline plus the 0.1 s sweep and linger
        assert t.ended_after is not None and t.ended_after < TIMEOUT + 3.5, t.ended_after
        [answer], _ = parse_answers(t.answer)
        assert answer.status == 408 and answer.json["status"] == "refused"
        assert "did not arrive within" in answer.json["error"]


def test_the_sync_worker_would_have_been_starved(redis_server, redis_client, tmp_path):
    """The control for the test above: the same slow clients against gunicorn's sync worker
    leave a valid delivery unanswered (the problem this server fixes)."""
    port = free_port()
    env = {**base_env(redis_server.client_url()), "PORT": str(port), "HOST": "127.0.0.1",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    proc = Proc([sys.executable, "-m", "gunicorn", "-c", "python:webhooks.gunicorn_conf",
                 "--workers", "2", "--worker-class", "sync", "webhooks.app:create_app()"], env,
                tmp_path / "sync.log").start()
    try:
        wait_until(lambda: _up(port), what="gunicorn (sync) to answer")
        slow = [Trickler(port, b"POST /webhooks/gitlab HTTP/1.1\r\n", b"X-Slow: aaaa\r\n")
                for _ in range(2)]
        for t in slow:
            t.start()
        time.sleep(0.5)
        with pytest.raises(requests.Timeout):
            requests.post(f"http://127.0.0.1:{port}/webhooks/gitlab", data=BODY, timeout=1.5,
                          headers={"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Pipeline Hook",
                                   "Content-Type": "application/json"})
    finally:
        proc.kill_group()  # its workers are stuck on the slow clients (that is the point)


def _up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("raw,status,needle", [
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request line"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431,
     "headers"),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers"),
    (b"GARBAGE\r\n\r\n", 400, "request line"),
    (b"POST / HTTP/1.1\nHost: x\n\n", 400, "bare LF"),
    (b"GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n", 400, "folded"),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "header name"),
    (b"GET / HTTP/1.1\r\nX-Nul: a\x00b\r\n\r\n", 400, "header"),
    (b"GET / HTTP/9.9\r\n\r\n", 400, "HTTP version"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "malformed"),
    (request(extra=b"Transfer-Encoding: chunked\r\n", token=SECRET), 400, "header"),  # CL + TE
    (request(extra=b"Content-Length: 0\r\n", token=SECRET), 400, "repeated header"),
    (b"POST /webhooks/gitlab HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "header"),
    (b"POST /webhooks/gitlab HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "header"),
    (b"POST /webhooks/gitlab HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 413,
     "exceeds"),
    (b"POST /webhooks/gitlab HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
     400, "chunk size"),
    (b"POST /webhooks/gitlab HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
     400, "CRLF"),
    (b"POST /webhooks/gitlab HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
     413, "limit"),
    (b"POST /webhooks/gitlab HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", 400,
     "ended before"),  # truncated, then the client closes its side
    (b"POST /webhooks/gitlab HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 400, "ended before"),
    (b"POST /webhooks/gitlab HTTP/1.1\r\nExpect: 42-wait\r\nContent-Length: 0\r\n\r\n", 417,
     "Expect"),
])
def test_malformed_requests_get_json_4xx_from_the_server(web, raw, status, needle):
    proc, port = web
    ex = exchange(port, raw)
    assert len(ex.answers) == 1, (ex, proc.log()[-2000:])
    answer = ex.answers[0]
    assert answer.status == status and answer.headers["content-type"] == "application/json"
    assert answer.json["status"] == "refused" and needle in answer.json["error"], answer.json
    assert ex.closed
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


def test_bodies_arrive_whole_chunked_and_pipelined(web, redis_client):
    _proc, port = web
    chunked = (b"POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"X-Gitlab-Token: " + SECRET.encode() + b"\r\nX-Gitlab-Event: Pipeline Hook\r\n"
               b"Content-Type: application/json\r\n\r\n")
    pieces = [BODY[:10], BODY[10:11], BODY[11:]]
    chunked += b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-T: 1\r\n\r\n"
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    # three requests in one write (pipelined) on one kept-alive connection, sent slowly
    data = request(BODY, token=SECRET) + chunked + health
    ex = exchange(port, [data[i:i + 97] for i in range(0, len(data), 97)], pause=0.005)
    assert [a.status for a in ex.answers] == [202, 200, 200], ex
    assert ex.answers[0].json["delivery_id"] == ex.answers[1].json["delivery_id"]  # same body
    assert ex.answers[2].json == {"status": "ok"}
    assert all(a.headers["connection"] == "keep-alive" for a in ex.answers)
    assert redis_client.llen("devops-agent") == 1


def test_expect_100_continue_is_answered_before_the_body(web):
    _proc, port = web
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(request(token=SECRET, extra=b"Expect: 100-continue\r\n")
                     .replace(b"Content-Length: 0", b"Content-Length: %d" % len(BODY)))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY)
        [answer], _ = parse_answers(sock.recv(65536))
        assert answer.status == 202
    finally:
        sock.close()


def test_buffered_bytes_are_capped_per_worker(redis_server, redis_client, tmp_path):
    env = base_env(redis_server.client_url(), MAX_BODY_BYTES="100000",
                   MAX_BUFFERED_BYTES="150000", BODY_TIMEOUT_SECONDS="5")
    proc, url = start_web(env, tmp_path, workers=1)
    port = int(url.rsplit(":", 1)[1])
    socks = []
    try:
        for _ in range(2):  # two unfinished 100 kB bodies, 80 kB of each sent
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(request(b" " * 100_000, token=SECRET)[:-20_000])
            socks.append(s)
            time.sleep(0.3)
        [answer], _ = parse_answers(socks[1].recv(65536))
        assert answer.status == 503 and answer.json["status"] == "unavailable"
        socks[0].sendall(b" " * 20_000)  # the first one completes normally
        [answer], _ = parse_answers(socks[0].recv(65536))
        assert answer.status == 400 and answer.json["status"] == "refused"  # 100 kB of spaces
    finally:
        for s in socks:
            s.close()
        proc.stop()


def test_an_idle_connection_is_closed_without_an_answer(web):
    _proc, port = web
    ex = exchange(port, b"", half_close=False, timeout=TIMEOUT + 3)
    assert ex.closed and not ex.answers and not ex.rest
    assert ex.seconds < TIMEOUT + 1.5


def test_many_pipelined_requests_in_one_write(web):
    _proc, port = web
    n = 2000  # more than Python's recursion limit: handled in a loop
    ex = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * n, timeout=30)
    assert len(ex.answers) == n and {a.status for a in ex.answers} == {200}
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
