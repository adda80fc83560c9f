#!/usr/bin/env python3
"""Intake bench: deliveries/s and acknowledgement latency of the webhook receiver on loopback,
next to reference apps under the same gunicorn settings (config, worker count and class).

Variants (each on a fresh gunicorn, and a fresh private redis-server where it needs one):
  bare          Flask answering 200 (the floor)
  parse+lpush   + token check + orjson parse + one Redis LPUSH of the body
  celery        + token check + parse + Celery send_task (what .delay() does) with the body
  receiver      webhooks.app:create_app(), the real thing (dedup + record + enqueue, one Lua call)

Scenarios:
  a  max throughput: closed loop, 16 connections, ~10 s (wrk if installed, else Python)
  b  fixed rate: open loop, 500 deliveries/s, ~10 s (Python; wrk cannot pace), latency measured
     from each request's scheduled send time

Usage: ./dev bench intake [--repeats 3] [--variants bare,receiver] [--scenarios a,b]
       ./dev bench intake --profile    (py-spy on one receiver worker; needs py-spy on PATH)
Nothing is installed by this script: wrk is used when `wrk` is on PATH (Debian: apt-get install
wrk), else the Python generator in loadgen.py. Everything binds 127.0.0.1; every process it
starts is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE), str(ROOT / "bench")]

import loadgen
from procgroup import LIVE, stop_group

from tasks.platform.redis_server import RedisServer, free_port

EVENT = "Pipeline Hook"
PATH = "/webhooks/gitlab"
QUEUE = "devops-agent"
VARIANTS = {  # name -> (gunicorn app spec, needs redis)
    "bare": ("baseline_apps:bare()", False),
    "parse+lpush": ("baseline_apps:parse_lpush()", True),
    "celery": ("baseline_apps:celery_publish()", True),
    "receiver": ("webhooks.app:create_app()", True),
}
GOAL_RATIO = 0.7
# Where a profiled worker is busy with a connection: sync worker, or webhooks/worker.py's loop.
REQUEST_FRAMES = ("SyncWorker.handle ", "BufferingWorker._readable ", "BufferingWorker._flush ",
                  "BufferingWorker._accept ", "BufferingWorker._sweep ")
GOAL_P99_MS = 25.0



def _on_term(signum, frame):  # SIGTERM/SIGHUP behave like Ctrl-C: unwind and clean up
    raise KeyboardInterrupt


class Stack:
    """A private redis-server (if needed) and gunicorn serving one variant, on 127.0.0.1."""

    def __init__(self, variant: str, tmp: Path, workers: int, redis_mode: str, secret: str,
                 fsync: str = "always", gunicorn_extra: tuple[str, ...] = ()) -> None:
        self.gunicorn_extra = list(gunicorn_extra)
        self.variant, self.tmp, self.workers = variant, tmp, workers
        self.redis_mode, self.secret, self.fsync = redis_mode, secret, fsync
        self.redis: RedisServer | None = None
        self.web: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> Stack:
        spec, needs_redis = VARIANTS[self.variant]
        env = {k: v for k, v in os.environ.items()
               if k not in {"REDIS_URL", "GITLAB_URL", "GITLAB_TOKEN", "SENTRY_DSN",
                            "WEBHOOK_SIGNING_KEY", "WEBHOOK_SECRET_FILE",
                            "PROMETHEUS_MULTIPROC_DIR"}}
        try:
            if needs_redis:
                shipped = self.fsync if self.fsync in ("no", "always") else None
                self.redis = RedisServer(self.tmp / "redis", unix_socket=self.redis_mode == "unix",
                                         appendfsync=shipped)
                self.redis.start()
                if self.redis.proc is not None:
                    LIVE.append(self.redis.proc)
                env["REDIS_URL"] = self.redis.client_url()
                if self.fsync not in ("no", "always"):  # RedisServer takes those two itself
                    import redis

                    client = redis.Redis.from_url(self.redis.client_url())
                    if self.fsync == "off":
                        client.config_set("appendonly", "no")
                    else:
                        client.config_set("appendfsync", self.fsync)
                    client.close()
            else:  # the receiver refuses to start without one; the bare app never connects
                env["REDIS_URL"] = "redis://127.0.0.1:1/0"
            self.port = free_port()
            metrics_dir = self.tmp / "metrics"
            metrics_dir.mkdir(parents=True, exist_ok=True)
            env.update({"WEBHOOK_SECRET": self.secret, "TASK_QUEUE": QUEUE, "HOST": "127.0.0.1",
                        "PORT": str(self.port), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])})
            self.log_path = self.tmp / "web.log"
            with open(self.log_path, "ab") as log:
                self.web = subprocess.Popen(
                    [sys.executable, "-m", "gunicorn", "-c", "python:webhooks.gunicorn_conf",
                     "--workers", str(self.workers), *self.gunicorn_extra, spec],
                    env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True)
            LIVE.append(self.web)
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.web is not None and self.web.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/healthz")
                ok = conn.getresponse().status == 200
                conn.close()
                # both workers booted? gunicorn logs "Booting worker" once per worker
                if ok and self.log_path.read_text().count("Booting worker") >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer within {timeout}s")

    def worker_pids(self) -> list[int]:
        assert self.web is not None
        path = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by gunicorn (master + workers) and redis."""
        tick = os.sysconf("SC_CLK_TCK")

        def cpu(pid: int) -> float:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                return (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                return 0.0

        out = {"web": 0.0, "redis": 0.0}
        if self.web is not None:
            out["web"] = cpu(self.web.pid) + sum(cpu(p) for p in self.worker_pids())
        if self.redis is not None and self.redis.proc is not None:
            out["redis"] = cpu(self.redis.proc.pid)
        return out

    def queued(self) -> int | None:
        if self.redis is None:
            return None
        import redis

        client = redis.Redis.from_url(self.redis.client_url())
        try:
            return int(client.llen(QUEUE))
        finally:
            client.close()

    def __exit__(self, *exc) -> None:
        if self.web is not None:
            stop_group(self.web)
        if self.redis is not None:
            self.redis.stop()
            if self.redis.proc in LIVE:
                LIVE.remove(self.redis.proc)


# -- load generators --------------------------------------------------------------------------

def target(port: int, secret: str, body: bytes, prefix: str) -> loadgen.Target:
    return loadgen.Target("127.0.0.1", port, PATH,
                          {"Content-Type": "application/json", "X-Gitlab-Event": EVENT,
                           "X-Gitlab-Token": secret, "User-Agent": "GitLab/17.11.0"},
                          body, prefix)


def run_wrk(port: int, secret: str, body_file: Path, prefix: str, connections: int,
            duration: float) -> dict:
    threads = min(2, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
            "--timeout", "10s", "-s", str(HERE / "post.lua"), f"http://127.0.0.1:{port}{PATH}",
            "--", str(body_file), secret, prefix, EVENT]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=duration + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    m = re.search(r"^WRKJSON (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    s = json.loads(m.group(1))
    errors = {k[4:]: v for k, v in s.items() if k.startswith("err_") and v}
    seconds = s["duration_us"] / 1e6
    return {"answered": s["requests"], "ok": s["requests"] - s["err_status"],
            "rps": s["requests"] / seconds, "p50_ms": s["p50_us"] / 1000,
            "p99_ms": s["p99_us"] / 1000, "max_ms": s["max_us"] / 1000, "errors": errors,
            "loadgen": "wrk"}


def summarize(res: loadgen.Result, duration: float, gen: str) -> dict:
    lat = sorted(res.latencies)
    ok = sum(v for k, v in res.statuses.items() if 200 <= k < 300)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    out = {"answered": len(lat), "ok": ok, "rps": len(lat) / (res.elapsed or duration),
           "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000 if lat else float("nan"),
           "errors": dict(res.errors), "statuses": {str(k): v for k, v in res.statuses.items()},
           "loadgen": gen}
    if res.send_lag:
        lag = sorted(res.send_lag)
        out["send_lag_p99_ms"] = lag[int(0.99 * (len(lag) - 1))] * 1000
    return out


def warm_up(port: int, secret: str, body: bytes) -> None:
    loadgen.run(target(port, secret, body, "warmup-" + uuid.uuid4().hex[:8]), duration=1.0,
                connections=4, processes=1)


def measure(stack: Stack, scenario: str, args, body: bytes, body_file: Path, use_wrk: bool) -> dict:
    warm_up(stack.port, stack.secret, body)
    before = stack.queued()
    cpu_before = stack.cpu_seconds()
    load1 = float(Path("/proc/loadavg").read_text().split()[0])  # others' load on the machine
    prefix = f"{stack.variant}-{scenario}-{uuid.uuid4().hex[:8]}"
    if scenario == "a":
        if use_wrk:
            r = run_wrk(stack.port, stack.secret, body_file, prefix, args.connections, args.duration)
        else:
            r = summarize(loadgen.run(target(stack.port, stack.secret, body, prefix),
                                      duration=args.duration, connections=args.connections,
                                      processes=args.gen_processes), args.duration, "python")
    else:
        r = summarize(loadgen.run(target(stack.port, stack.secret, body, prefix),
                                  duration=args.duration, rate=args.rate,
                                  processes=args.gen_processes), args.duration, "python")
    cpu_after = stack.cpu_seconds()
    after = stack.queued()
    r["load1_before"] = load1
    # CPU per answered request (worker processes are not restarted during a run)
    r["cpu_us"] = {k: (cpu_after[k] - cpu_before[k]) / max(r["answered"], 1) * 1e6
                   for k in cpu_after}
    if before is not None and after is not None:
        r["enqueued"] = after - before
    return r


# -- profile ----------------------------------------------------------------------------------

def profile(args, body: bytes, body_file: Path, secret: str, tmp: Path, use_wrk: bool) -> None:
    """py-spy (sampling, --idle so time blocked on Redis counts) on one receiver worker."""
    py_spy = args.py_spy or shutil.which("py-spy")
    if not py_spy:
        sys.exit("--profile needs py-spy on PATH (or --py-spy PATH); this script installs nothing")
    for scenario in args.scenarios:
        with Stack("receiver", tmp / f"profile-{scenario}", args.workers, args.redis, secret,
                   args.appendfsync, gunicorn_extra(args)) as st:
            warm_up(st.port, secret, body)
            pid = st.worker_pids()[0]
            raw = tmp / f"profile-{scenario}.txt"
            idle = ["--idle"] if args.profile_mode == "wall" else []
            spy = subprocess.Popen([py_spy, "record", "--pid", str(pid), *idle, "--nolineno",
                                    "--rate", str(args.profile_rate), "--format", "raw",
                                    "--duration", str(round(args.duration)), "--output", str(raw)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
            LIVE.append(spy)
            time.sleep(0.5)
            r = measure(st, scenario, args, body, body_file, use_wrk and scenario == "a")
            try:
                spy.wait(timeout=args.duration + 30)
            finally:
                LIVE.remove(spy)
            print(f"\nprofile ({args.profile_mode} time), scenario {scenario}: {r['answered']} "
                  f"answered by {args.workers} workers, {r['rps']:.0f}/s; worker pid {pid}, "
                  f"py-spy {args.profile_rate} Hz; appendfsync {args.appendfsync}")
            print_profile(raw, r["answered"] / args.workers, args.profile_rate, args.top)
            if args.keep_tmp:
                print(f"raw stacks: {raw}")


def print_profile(raw: Path, requests_per_worker: float, rate: int, top: int) -> None:
    incl: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = in_req = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = [f.strip() for f in stack.split(";")]
        # the thread name/idle markers py-spy adds are not frames of interest
        frames = [f for f in frames if "(" in f]
        total += count
        try:
            # gunicorn's SyncWorker.handle (parse the HTTP request, run the app, send, close), or
            # in webhooks/worker.py's loop what it does for a connection (read, run, send)
            start = next(i for i, f in enumerate(frames) if f.startswith(REQUEST_FRAMES))
        except StopIteration:
            continue
        in_req += count
        sub = frames[start:]
        for f in set(sub):
            incl[f] += count
        self_[sub[-1]] += count
    if not in_req:
        print("  no samples inside a request (did py-spy attach?)")
        return
    per_req_us = in_req / rate / max(requests_per_worker, 1) * 1e6
    print(f"  {total} samples, {in_req} ({in_req / total:.0%}) inside a request "
          f"(handling a connection); the rest in the worker loop (accept/select, heartbeat).")
    print(f"  ~{per_req_us:.0f} us of sampled worker time per request (assumes an even split "
          f"between workers)")
    print(f"  {'inclusive':>9} {'self':>6} {'~us/req':>8}  function (file)")
    for f, c in incl.most_common(top):
        print(f"  {c / in_req:9.1%} {self_[f] / in_req:6.1%} {c / in_req * per_req_us:8.0f}  "
              f"{short(f)}")
    print("  top self time:")
    for f, c in self_.most_common(min(top, 15)):
        print(f"  {'':9} {c / in_req:6.1%} {c / in_req * per_req_us:8.0f}  {short(f)}")


def short(frame: str) -> str:
    return re.sub(r"\(/.*?/(site-packages|lib/python3[.\d]*|main)/", "(", frame)


# -- report -----------------------------------------------------------------------------------

def fmt_spread(values: list[float], digits: int = 1) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def report(results: dict, args) -> None:
    threads = f" x {args.threads} threads" if args.threads else ""
    worker = args.worker_class or "gunicorn_conf: BufferingWorker"
    print(f"\nmedian of {args.repeats} run(s) [min-max]; {args.workers} gunicorn workers "
          f"({worker}{threads}); redis over {args.redis}, appendfsync {args.appendfsync}; "
          f"payload {args.payload.name} ({args.payload.stat().st_size} B)")
    for scenario in args.scenarios:
        title = (f"a) max throughput, {args.connections} connections, {args.duration:g} s"
                 if scenario == "a" else
                 f"b) fixed rate {args.rate:g}/s (open loop), {args.duration:g} s")
        gens = {r["loadgen"] for v in results.values() for r in v.get(scenario, [])}
        print(f"\n{title}  [load: {', '.join(sorted(gens))}]")
        print(f"{'variant':<12} {'req/s':>22} {'p50 ms':>20} {'p99 ms':>20} {'vs bare':>8}  notes")
        bare = results.get("bare", {}).get(scenario)
        bare_rps = statistics.median(r["rps"] for r in bare) if bare else None
        for variant in args.variants:
            runs = results.get(variant, {}).get(scenario)
            if not runs:
                continue
            rps = [r["rps"] for r in runs]
            ratio = (f"{statistics.median(rps) / bare_rps:.2f}"
                     if bare_rps and scenario == "a" else "-")
            notes = []
            bad = sum(r["answered"] - r["ok"] for r in runs)
            errs = Counter()
            for r in runs:
                errs.update(r["errors"])
            if bad:
                notes.append(f"{bad} non-2xx")
            if errs:
                notes.append("errors " + ",".join(f"{k}={v}" for k, v in errs.items()))
            # wrk does not count answers still in flight when it stops (up to one per connection)
            slack = args.connections if scenario == "a" else 0
            if any("enqueued" in r and not r["ok"] <= r["enqueued"] <= r["ok"] + slack
                   for r in runs):
                notes.append("ENQUEUED != 2xx: " + ",".join(
                    f"{r.get('enqueued')}/{r['ok']}" for r in runs))
            if scenario == "b" and runs and "send_lag_p99_ms" in runs[0]:
                notes.append("gen lag p99 " + "/".join(f"{r['send_lag_p99_ms']:.1f}" for r in runs))
            cpu = {k: statistics.median(r["cpu_us"][k] for r in runs) for k in runs[0]["cpu_us"]}
            notes.append("cpu/req web {:.0f} us".format(cpu["web"])
                         + (" redis {:.0f} us".format(cpu["redis"]) if cpu["redis"] else ""))
            if variant == "receiver":
                # The issue's "floor" is the least a durable receiver can do: token check, JSON
                # parse, one LPUSH (its 2,500 req/s); bare Flask does no I/O at all.
                floor = results.get("parse+lpush", {}).get("a")
                if scenario == "a" and floor:
                    ratio_floor = statistics.median(rps) / statistics.median(r["rps"] for r in floor)
                    ok = ratio_floor >= GOAL_RATIO
                    notes.append(f"{ratio_floor:.2f} of the parse+lpush floor, goal >= "
                                 f"{GOAL_RATIO}: {'met' if ok else 'NOT met'}")
                if scenario == "b":
                    ok = statistics.median(r["p99_ms"] for r in runs) < GOAL_P99_MS
                    notes.append(f"goal p99 < {GOAL_P99_MS:g} ms: {'met' if ok else 'NOT met'}")
            print(f"{variant:<12} {fmt_spread(rps, 0):>22} "
                  f"{fmt_spread([r['p50_ms'] for r in runs], 2):>20} "
                  f"{fmt_spread([r['p99_ms'] for r in runs], 2):>20} {ratio:>8}  {'; '.join(notes)}")


def gunicorn_extra(args) -> tuple[str, ...]:
    """Overrides of webhooks/gunicorn_conf.py, applied to every variant alike (experiments)."""
    out: tuple[str, ...] = ()
    if args.worker_class:
        out += ("--worker-class", args.worker_class)
    if args.threads:
        out += ("--threads", str(args.threads))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS),
                   type=lambda s: [v for v in s.split(",") if v])
    p.add_argument("--scenarios", default="a,b", type=lambda s: [v for v in s.split(",") if v])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    p.add_argument("--connections", type=int, default=16, help="scenario a")
    p.add_argument("--rate", type=float, default=500.0, help="scenario b, deliveries/s")
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    p.add_argument("--worker-class", help="override gunicorn_conf's worker class (all variants)")
    p.add_argument("--threads", type=int, help="gunicorn --threads (gthread), all variants")
    p.add_argument("--redis", choices=["unix", "tcp"], default="unix",
                   help="unix socket as `serve` runs it (default), or TCP loopback")
    p.add_argument("--appendfsync", choices=["always", "everysec", "no", "off"], default="no",
                   help="redis durability: no (as shipped, default), always, everysec, or off "
                        "(no append-only file) - to see what durability costs")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                   help="scenario a: wrk when on PATH (auto), else the Python generator")
    p.add_argument("--gen-processes", type=int, default=2, help="Python generator processes")
    p.add_argument("--payload", type=Path, default=ROOT / "fixtures/payloads/pipeline_failed.json")
    p.add_argument("--json", type=Path, help="also write every run's numbers here")
    p.add_argument("--profile", action="store_true",
                   help="instead of the table: py-spy profile of one receiver worker under load")
    p.add_argument("--py-spy", help="path to py-spy (default: on PATH)")
    p.add_argument("--profile-rate", type=int, default=250, help="py-spy samples/s")
    p.add_argument("--profile-mode", choices=["wall", "cpu"], default="wall",
                   help="wall: include time blocked on I/O (Redis, sockets); cpu: on-CPU only")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown or set(args.scenarios) - {"a", "b"}:
        p.error(f"variants are {', '.join(VARIANTS)}; scenarios a and b")
    if args.duration > 120 or args.repeats > 20:
        p.error("bounded: --duration <= 120 s, --repeats <= 20")

    has_wrk = shutil.which("wrk") is not None
    if args.loadgen == "wrk" and not has_wrk:
        p.error("wrk is not on PATH (Debian: apt-get install wrk); or use --loadgen python")
    use_wrk = has_wrk and args.loadgen != "python"
    if "a" in args.scenarios and not use_wrk:
        print("note: wrk not found on PATH; scenario a uses the Python generator "
              "(install wrk with `apt-get install wrk` for a lighter load generator)", file=sys.stderr)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    body = args.payload.read_bytes()
    secret = "bench-" + uuid.uuid4().hex
    tmp = Path(tempfile.mkdtemp(prefix="intake-bench-"))
    results: dict[str, dict[str, list[dict]]] = {}
    try:
        if args.profile:
            profile(args, body, args.payload, secret, tmp, use_wrk)
            return 0
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        print(f"intake bench {started}: variants {', '.join(args.variants)}; scenarios "
              f"{', '.join(args.scenarios)}; {args.repeats} repeat(s), interleaved", flush=True)
        for rep in range(args.repeats):
            for scenario in args.scenarios:
                for variant in args.variants:
                    run_dir = tmp / f"{variant.replace('+', '_')}-{scenario}-{rep}"
                    with Stack(variant, run_dir, args.workers, args.redis, secret,
                               args.appendfsync, gunicorn_extra(args)) as st:
                        r = measure(st, scenario, args, body, args.payload, use_wrk)
                    shutil.rmtree(run_dir, ignore_errors=True)
                    results.setdefault(variant, {}).setdefault(scenario, []).append(r)
                    print(f"  run {rep + 1} {scenario} {variant:<12} {r['rps']:8.0f}/s "
                          f"p50 {r['p50_ms']:7.2f} ms p99 {r['p99_ms']:7.2f} ms "
                          f"ok {r['ok']}/{r['answered']} enq {r.get('enqueued', '-')} cpu/req us "
                          f"web {r['cpu_us']['web']:.0f} redis {r['cpu_us']['redis']:.0f} "
                          f"load1 {r['load1_before']:.2f} "
                          f"{r['errors'] or ''}", flush=True)
        report(results, args)
        if args.json:
            args.json.write_text(json.dumps({"started": started, "args": {
                k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1))
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; stopping gunicorn and redis", file=sys.stderr)
        if results:
            report(results, args)
        return 130
    finally:
        for proc in list(LIVE):
            stop_group(proc) if proc.pid else None
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
