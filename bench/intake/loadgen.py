"""A small Python HTTP load generator for the intake bench (no third-party packages).

Two modes, each run in several processes (asyncio inside each) so the generator itself is not
the bottleneck on a small machine:

* closed loop (`connections` > 0, `rate` = 0): each connection sends its next request as soon as
  the previous answer arrived; keep-alive when the server allows it, else a new connection (the
  sync gunicorn worker answers every request with `Connection: close`). Latency is measured from
  writing the request to the end of the answer, as wrk does (connect time not included).
* open loop (`rate` > 0): requests are sent on a fixed schedule whatever the server does, one
  connection per request, as GitLab does; latency is measured from the *scheduled* send time to
  the end of the answer, so a stalled server cannot hide its queueing delay (no coordinated
  omission). `send_lag` reports how late the generator itself was, to tell its own lag apart.

Every request carries a unique Idempotency-Key (`<prefix>-<process>-<n>`).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass, field

TIMEOUT = 10.0  # GitLab waits 10 s for an answer
MAX_IN_FLIGHT = 2000  # per process, open loop: beyond this a request is counted as not sent


@dataclass
class Target:
    host: str
    port: int
    path: str
    headers: dict[str, str]
    body: bytes
    key_prefix: str

    def request(self, key: str, keep_alive: bool) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(self.body)}", f"Idempotency-Key: {key}",
                 "Connection: keep-alive" if keep_alive else "Connection: close"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests only
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    send_lag: list[float] = field(default_factory=list)  # open loop: actual - scheduled start
    elapsed: float = 0.0

    def merge(self, other: Result) -> None:
        self.latencies += other.latencies
        self.send_lag += other.send_lag
        for k, v in other.statuses.items():
            self.statuses[k] = self.statuses.get(k, 0) + v
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v
        self.elapsed = max(self.elapsed, other.elapsed)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, server keeps the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep = 0, lines[0].startswith("HTTP/1.1")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            keep = value.strip().lower() == "keep-alive"
    if length:
        await reader.readexactly(length)
    return status, keep


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()


async def _closed_loop(target: Target, conns: int, duration: float, tag: str, res: Result) -> None:
    end = time.monotonic() + duration
    counter = 0

    async def conn_loop() -> None:
        nonlocal counter
        reader = writer = None
        while time.monotonic() < end:
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(target.host, target.port), TIMEOUT)
                counter += 1
                data = target.request(f"{target.key_prefix}-{tag}-{counter}", keep_alive=True)
                t0 = time.perf_counter()
                writer.write(data)
                status, keep = await asyncio.wait_for(_read_response(reader), TIMEOUT)
                res.latencies.append(time.perf_counter() - t0)
                res.statuses[status] = res.statuses.get(status, 0) + 1
                if not keep:
                    _close(writer)
                    reader = writer = None
            except TimeoutError:
                res.error("timeout")
                _close(writer)
                reader = writer = None
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                res.error(type(exc).__name__)
                _close(writer)
                reader = writer = None
                await asyncio.sleep(0.01)
        _close(writer)

    started = time.monotonic()
    await asyncio.gather(*(conn_loop() for _ in range(conns)))
    res.elapsed = time.monotonic() - started


async def _open_loop(target: Target, rate: float, duration: float, t0: float, index: int,
                     procs: int, tag: str, res: Result) -> None:
    """Send requests index, index+procs, ... of a global schedule of `rate` per second."""
    tasks: set[asyncio.Task] = set()
    n = int(rate * duration) // procs

    async def one(i: int, scheduled: float) -> None:
        writer = None
        lag = time.monotonic() - scheduled
        res.send_lag.append(lag)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), TIMEOUT)
            writer.write(target.request(f"{target.key_prefix}-{tag}-{i}", keep_alive=False))
            remaining = TIMEOUT - (time.monotonic() - scheduled)
            status, _ = await asyncio.wait_for(_read_response(reader), max(remaining, 0.001))
            res.latencies.append(time.monotonic() - scheduled)
            res.statuses[status] = res.statuses.get(status, 0) + 1
        except TimeoutError:
            res.error("timeout")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            res.error(type(exc).__name__)
        finally:
            _close(writer)

    for i in range(n):
        scheduled = t0 + (index + i * procs) / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= MAX_IN_FLIGHT:
            res.error("not_sent_generator_cap")
            continue
        task = asyncio.ensure_future(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=TIMEOUT + 1)
    res.elapsed = time.monotonic() - t0


def _worker(target: Target, mode: str, conns: int, rate: float, duration: float, t0: float,
            index: int, procs: int, out: mp.Queue[Result]) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler is inherited by fork
    res = Result()
    tag = f"p{index}"
    if mode == "closed":
        asyncio.run(_closed_loop(target, conns, duration, tag, res))
    else:
        asyncio.run(_open_loop(target, rate, duration, t0, index, procs, tag, res))
    out.put(res)


def run(target: Target, *, duration: float, connections: int = 0, rate: float = 0.0,
        processes: int = 2) -> Result:
    """Run the load; returns the merged result. Child processes are reaped even on Ctrl-C."""
    mode = "open" if rate > 0 else "closed"
    procs = max(1, min(processes, connections)) if mode == "closed" else max(1, processes)
    ctx = mp.get_context("fork")
    out: mp.Queue[Result] = ctx.Queue()
    t0 = time.monotonic() + 0.2  # shared start of the open-loop schedule (monotonic is system-wide)
    children = []
    for i in range(procs):
        share = connections // procs + (1 if i < connections % procs else 0)
        p = ctx.Process(target=_worker, args=(target, mode, share, rate, duration, t0, i, procs, out),
                        daemon=True)
        p.start()
        children.append(p)
    merged = Result()
    try:
        for _ in children:
            merged.merge(out.get(timeout=duration + 2 * TIMEOUT + 10))
    finally:
        for p in children:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    return merged
