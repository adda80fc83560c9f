#!/usr/bin/env python3
"""End-to-end bench: failed-pipeline delivery -> comment on the linked issue, under load.

Starts the whole service on loopback (a real redis-server, the gunicorn receiver, Celery worker
process(es) with the default concurrency, the fake GitLab as a subprocess), seeds N distinct
failed pipelines in the fake (issue #i, MR !i from branch "<i>-fix" closing it, pipeline
100000+i with one failed job whose trace is a real fixture log), then sends N Pipeline Hook
deliveries (fixtures/payloads/pipeline_failed.json with the ids rewritten) at a fixed rate,
open loop, from a thread pool. Latency is measured from each POST to the moment the fake
GitLab answered the note creation on issue #i (its recorded call: arrival time + duration).

Baselines measured in the same run, on the same stack:
  idle       one delivery at a time on the warmed-up, otherwise idle stack (delivery -> comment)
  ack        the receiver's own answer (POST -> 202) during the load

Goal (issue 4): p95 delivery -> comment < 2 s at 50 deliveries/s, every delivery exactly one
comment.

Usage: ./dev bench e2e [--rate 50] [--duration 10] [--workers 1] [--concurrency 2]
                       [--pool prefork] [--web-workers 2] [--mix mixed|runner|pytest]
                       [--redis-fsync always|everysec] [--repeats 1] [--profile]
Everything binds 127.0.0.1; every process it starts runs in its own process group and is
stopped on exit, Ctrl-C and SIGTERM included. --profile needs py-spy
(.venv/bin/python -m pip install py-spy) and records the first worker's processes.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import orjson
import redis
from procgroup import LIVE, group_pids, stop_group

from tasks.intake.inbox import record_key
from tasks.platform.redis_server import free_port, redis_server_binary
from tests.support.fake_gitlab.server import FakeGitLabControl
from tests.support.fake_gitlab.state import BOT_TOKEN

PAYLOADS = ROOT / "fixtures" / "payloads"
LOGS = ROOT / "fixtures" / "logs"
SECRET = "bench-e2e-secret-token"
PROJECT, PROJECT_PATH = 15, "acme/shop"
PIPELINE_BASE, JOB_BASE = 100_000, 1_000_000
NOTE_PATH = re.compile(r"/projects/[^/]+/issues/(\d+)/notes$")
GOAL_P95_S, GOAL_RATE = 2.0, 50.0
JOBS = {  # failed job per kind: (name, stage, failure_reason, fixture log)
    "runner": ("integration-tests", "test", "runner_system_failure", "runner-system-failure.log"),
    "pytest": ("unit-tests", "test", "script_failure", "pytest-failure.log"),
}



# --- processes ------------------------------------------------------------------------------

def _on_term(signum, frame):  # SIGTERM/SIGHUP unwind like Ctrl-C, so `finally` cleans up
    raise KeyboardInterrupt


def spawn(argv: list[str], env: dict[str, str], log_path: Path, **kw) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - the child process writes to it
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    LIVE.append(proc)
    return proc


def stop_all() -> None:
    for proc in reversed(list(LIVE)):
        stop_group(proc)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None,
             log_path: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{tail}")
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


class Stack:
    """redis-server, fake GitLab, gunicorn receiver and Celery worker(s), all on loopback."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.groups: dict[str, list[subprocess.Popen]] = defaultdict(list)
        self.worker_logs: list[Path] = []

    def start(self) -> Stack:
        a, tmp = self.args, self.tmp
        # redis: the same settings as tasks/redis_server.RedisServer (AOF, fsync always)
        rport = free_port()
        rdir = tmp / "redis"
        rdir.mkdir()
        self.redis_proc = spawn([redis_server_binary(), "--port", str(rport), "--bind", "127.0.0.1",
                                 "--dir", str(rdir), "--save", "", "--appendonly", "yes",
                                 "--appendfsync", a.redis_fsync, "--daemonize", "no",
                                 "--protected-mode", "yes", "--loglevel", "warning"],
                                dict(os.environ), tmp / "redis.log")
        self.groups["redis"].append(self.redis_proc)
        self.redis_url = f"redis://127.0.0.1:{rport}/0"
        self.redis = redis.Redis.from_url(self.redis_url)
        wait_for(lambda: _ping(self.redis), 10, "redis-server", self.redis_proc, tmp / "redis.log")

        # fake GitLab: `python -m tests.support.fake_gitlab --port 0` prints its URL first
        fake = subprocess.Popen([sys.executable, "-m", "tests.support.fake_gitlab", "--port", "0"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=open(tmp / "fake.log", "ab"),  # noqa: SIM115
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        LIVE.append(fake)
        self.groups["fake-gitlab"].append(fake)
        ready, _, _ = select.select([fake.stdout], [], [], 20)
        line = fake.stdout.readline() if ready else ""
        if not line.startswith("http://"):
            raise RuntimeError(f"fake GitLab did not start: {line!r}")
        self.fake = FakeGitLabControl(line.strip())

        env = {k: v for k, v in os.environ.items()
               if k not in {"REDIS_URL", "GITLAB_URL", "GITLAB_TOKEN", "SENTRY_DSN",
                            "WEBHOOK_SIGNING_KEY", "PROMETHEUS_MULTIPROC_DIR", "DRY_RUN",
                            "HANDLERS", "RULES_FILE", "DEVOPS_AGENT_CONFIG"}}
        env.update({
            "WEBHOOK_SECRET": SECRET, "LOG_LEVEL": a.log_level, "PYTHONPATH": str(ROOT),
            "REDIS_URL": self.redis_url, "GITLAB_URL": self.fake.url, "GITLAB_TOKEN": BOT_TOKEN,
            "GITLAB_PROJECTS": "acme/*",
            # production defaults, not the test suite's 1 s / 2 s
            "REDELIVER_AFTER_SECONDS": "15", "TASK_LEASE_SECONDS": "30",
        })
        self.env = env

        port = free_port()
        wenv = {**env, "PORT": str(port), "HOST": "127.0.0.1",
                "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics")}
        os.makedirs(wenv["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
        web = spawn([sys.executable, "-m", "gunicorn", "-c", "python:webhooks.gunicorn_conf",
                     "--workers", str(a.web_workers), "webhooks.app:create_app()"],
                    wenv, tmp / "web.log")
        self.groups["gunicorn"].append(web)
        self.host, self.port = "127.0.0.1", port
        wait_for(lambda: _healthz(self.host, port), 30, "gunicorn /healthz", web, tmp / "web.log")

        for n in range(a.workers):
            log = tmp / f"worker-{n}.log"
            w = spawn([sys.executable, "-m", "tasks.cli.main", "worker", "--concurrency",
                       str(a.concurrency), "--pool", a.pool], env, log)
            self.groups["celery"].append(w)
            self.worker_logs.append(log)
        for n, w in enumerate(self.groups["celery"]):
            log = self.worker_logs[n]
            wait_for(lambda log=log: "ready." in log.read_text(errors="replace"), 60,
                     f"celery worker {n}", w, log)
        return self

    def cpu(self) -> dict[str, float]:
        return {name: sum(group_cpu(p.pid) for p in procs) for name, procs in self.groups.items()}

    def stop(self) -> None:
        for name in ("celery", "gunicorn", "fake-gitlab", "redis"):
            for p in self.groups.get(name, []):
                stop_group(p)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _healthz(host: str, port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=1)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


# --- seeding and payloads ------------------------------------------------------------------

def kind_of(i: int, mix: str) -> str:
    if mix == "mixed":
        return "runner" if i % 2 else "pytest"
    return mix


def seed(fake: FakeGitLabControl, iids: list[int], mix: str) -> None:
    traces = {k: next(LOGS.rglob(v[3])).read_text() for k, v in JOBS.items()}
    pipelines, issues, mrs = [], [], []
    for i in iids:
        name, stage, reason, _ = JOBS[kind_of(i, mix)]
        branch = f"{i}-fix"
        issues.append({"title": f"Bench issue {i}", "iid": i})
        mrs.append({"title": f"Fix {i}", "source_branch": branch, "iid": i,
                    "description": f"Closes #{i}"})
        pipelines.append({"id": PIPELINE_BASE + i, "ref": branch, "status": "failed", "jobs": [
            {"id": JOB_BASE + 10 * i + 1, "name": "build-image", "stage": "build",
             "status": "success"},
            {"id": JOB_BASE + 10 * i + 2, "name": name, "stage": stage, "status": "failed",
             "failure_reason": reason, "trace": traces[kind_of(i, mix)]},
            {"id": JOB_BASE + 10 * i + 4, "name": "lint", "stage": "test", "status": "failed",
             "allow_failure": True},
        ]})
    fake.seed(projects=[{"path": PROJECT_PATH, "id": PROJECT, "pipelines": pipelines,
                         "issues": issues, "mrs": mrs}])


def payload(template: dict, i: int, mix: str) -> bytes:
    p = copy.deepcopy(template)
    name, stage, reason, _ = JOBS[kind_of(i, mix)]
    branch = f"{i}-fix"
    sha = f"{i:040x}"
    p["object_attributes"].update(id=PIPELINE_BASE + i, iid=i, ref=branch, sha=sha,
                                  name=f"Pipeline for merge request !{i}",
                                  url=f"https://gitlab.example.com/{PROJECT_PATH}/-/pipelines/"
                                      f"{PIPELINE_BASE + i}")
    p["merge_request"].update(id=10_000 + i, iid=i, source_branch=branch,
                              title=f"Resolve \"Bench issue {i}\"",
                              url=f"https://gitlab.example.com/{PROJECT_PATH}/-/merge_requests/{i}")
    p["commit"].update(id=sha, message=f"Fix bench issue {i}\n\nRefs #{i}\n")
    build, failed, lint = (copy.deepcopy(b) for b in (template["builds"][0],
                                                       template["builds"][2],
                                                       template["builds"][3]))
    build["id"] = JOB_BASE + 10 * i + 1
    failed.update(id=JOB_BASE + 10 * i + 2, name=name, stage=stage, failure_reason=reason)
    lint["id"] = JOB_BASE + 10 * i + 4
    p["builds"] = [build, failed, lint]
    return orjson.dumps(p)


# --- load ------------------------------------------------------------------------------------

HEADERS = {"Content-Type": "application/json", "X-Gitlab-Event": "Pipeline Hook",
           "X-Gitlab-Token": SECRET, "User-Agent": "GitLab/17.11.0"}


def post(host: str, port: int, body: bytes) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", "/webhooks/gitlab", body=body,
                     headers={**HEADERS, "Idempotency-Key": str(uuid.uuid4())})
        resp = conn.getresponse()
        data = resp.read()
        try:
            did = orjson.loads(data).get("delivery_id")
        except orjson.JSONDecodeError:
            did = None
        return resp.status, did
    finally:
        conn.close()


def fire(host: str, port: int, bodies: list[tuple[int, bytes]], rate: float,
         threads: int) -> list[dict]:
    """Open loop: delivery k is due at start + k/rate, whatever happened to the others."""
    results: list[dict | None] = [None] * len(bodies)
    lock = threading.Lock()
    cursor = [0]
    start = time.time() + 0.2

    def sender() -> None:
        while True:
            with lock:
                k = cursor[0]
                cursor[0] += 1
            if k >= len(bodies):
                return
            iid, body = bodies[k]
            due = start + k / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()
            try:
                status, did = post(host, port, body)
            except OSError as exc:
                status, did = 0, None
                print(f"  POST failed for #{iid}: {exc}", file=sys.stderr)
            results[k] = {"iid": iid, "due": due, "sent": sent, "acked": time.time(),
                          "status": status, "delivery_id": did}

    pool = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return [r for r in results if r is not None]


POLLS = Counter()  # our own HGETs, taken out of the Redis command counts


def wait_done(client: redis.Redis, delivery_ids: list[str], timeout: float) -> int:
    """Poll the inbox (cheap, and not the fake) until every delivery is finished."""
    deadline = time.monotonic() + timeout
    pending = list(delivery_ids)
    while pending and time.monotonic() < deadline:
        POLLS["hget"] += len(pending)
        pipe = client.pipeline(transaction=False)
        for did in pending:
            pipe.hget(record_key(did), "status")
        statuses = pipe.execute()
        finished = (b"done", b"invalid", b"dead", b"failed")
        pending = [d for d, s in zip(pending, statuses, strict=True) if s not in finished]
        if pending:
            time.sleep(0.25)
    return len(delivery_ids) - len(pending)


def psi() -> dict[str, float]:
    """Seconds some task on the machine was stalled waiting for CPU / IO (PSI "some" totals)."""
    out = {}
    for res in ("cpu", "io"):
        try:
            line = Path(f"/proc/pressure/{res}").read_text().splitlines()[0]
            out[res] = int(line.rsplit("total=", 1)[1]) / 1e6
        except (OSError, IndexError, ValueError):
            pass
    return out


class WriteProbe(threading.Thread):
    """Times one fsynced Redis write (SET) every 50 ms during the load: what each of the
    service's own writes waits for."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        k = 0
        while not self.stop.wait(0.05):
            k += 1
            t = time.perf_counter()
            self.client.set("bench:probe", k)
            self.samples.append(time.perf_counter() - t)


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Redis commands served so far, by name (INFO commandstats)."""
    return {k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in client.info("commandstats").items()}


def note_calls(fake: FakeGitLabControl) -> dict[int, list[dict]]:
    by_iid: dict[int, list[dict]] = defaultdict(list)
    for c in fake.calls(method="POST", path_re=r"/issues/\d+/notes$"):
        m = NOTE_PATH.search(c["path"])
        if m and c.get("status") == 201:
            by_iid[int(m.group(1))].append(c)
    return by_iid


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def idle_baseline(stack: Stack, template: dict, iids: list[int], mix: str,
                  timeout: float) -> list[float]:
    """One delivery at a time: POST, then wait for its note; the stack is otherwise idle."""
    out = []
    for i in iids:
        sent = time.time()
        status, did = post(stack.host, stack.port, payload(template, i, mix))
        if status != 202 or not did:
            raise RuntimeError(f"idle delivery #{i}: HTTP {status}")
        if not wait_done(stack.redis, [did], timeout):
            raise RuntimeError(f"idle delivery #{i} not processed within {timeout}s")
        calls = note_calls(stack.fake).get(i, [])
        if not calls:
            raise RuntimeError(f"idle delivery #{i} produced no comment")
        out.append(calls[0]["time"] + (calls[0]["duration"] or 0) - sent)
    return out


# --- one run -------------------------------------------------------------------------------

def run_once(args: argparse.Namespace, run_no: int) -> dict:
    n = args.count or round(args.rate * args.duration)
    warm, idle = args.warmup, args.idle
    load_iids = list(range(1, n + 1))
    warm_iids = list(range(n + 1, n + 1 + warm))
    idle_iids = list(range(n + 1 + warm, n + 1 + warm + idle))
    template = orjson.loads((PAYLOADS / "pipeline_failed.json").read_bytes())
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    stack = Stack(args, tmp)
    profiler = None
    try:
        t = time.monotonic()
        stack.start()
        seed(stack.fake, load_iids + warm_iids + idle_iids, args.mix)
        print(f"run {run_no}: stack up in {time.monotonic() - t:.1f}s "
              f"({args.workers} worker process(es) x concurrency {args.concurrency}, "
              f"{args.pool}; {args.web_workers} gunicorn workers); {n} pipelines seeded",
              flush=True)

        # Warm-up: every pool process builds its adapters (python-gitlab, rules) on first use.
        dids = [post(stack.host, stack.port, payload(template, i, args.mix))[1] for i in warm_iids]
        wait_done(stack.redis, [d for d in dids if d], args.drain_timeout)
        idle_lat = idle_baseline(stack, template, idle_iids, args.mix, 30)
        time.sleep(0.5)

        bodies = [(i, payload(template, i, args.mix)) for i in load_iids]
        if args.profile and run_no == 1:
            profiler = start_profiler(stack, tmp, n / args.rate + 5)
        cpu0, wall0 = stack.cpu(), time.time()
        cmd0 = commandstats(stack.redis)
        POLLS.clear()
        psi0 = psi()
        probe = WriteProbe(stack.redis_url)
        probe.start()
        own0 = os.times()
        results = fire(stack.host, stack.port, bodies, args.rate, args.threads)
        send_end = time.time()
        acked = [r for r in results if r["status"] == 202 and r["delivery_id"]]
        finished = wait_done(stack.redis, [r["delivery_id"] for r in acked], args.drain_timeout)
        drained = time.time()
        cpu1, own1 = stack.cpu(), os.times()
        probe.stop.set()
        probe.join()
        cmd1 = commandstats(stack.redis)
        cmd1["hget"] = cmd1.get("hget", 0) - POLLS["hget"]
        cmd1["set"] = cmd1.get("set", 0) - len(probe.samples)
        psi1 = psi()
        time.sleep(args.grace)  # late duplicates (a redelivery) would show up here
        notes = note_calls(stack.fake)
        if profiler is not None:
            stop_profile(profiler)

        lat, ack, lag, done_times = [], [], [], []
        exactly_one = missing = dupes = 0
        first_sent = min(r["sent"] for r in results)
        for r in results:
            ack.append(r["acked"] - r["sent"])
            lag.append(r["sent"] - r["due"])
            calls = notes.get(r["iid"], [])
            if len(calls) == 1:
                exactly_one += 1
            elif not calls:
                missing += 1
            else:
                dupes += 1
            if calls:
                t_note = calls[0]["time"] + (calls[0]["duration"] or 0)
                lat.append(t_note - r["sent"])
                done_times.append(t_note)
        last_note = max(done_times) if done_times else drained
        errors = sum(1 for p in stack.worker_logs for line in p.read_text(errors="replace").splitlines()
                     if '"level":"error"' in line)
        reaped = sum(int(m) for p in stack.worker_logs for m in
                     re.findall(r"re-enqueued (\d+) unfinished", p.read_text(errors="replace")))
        api = Counter(f"{c['method']} {re.sub(r'/[0-9]+', '/N', c['path'].split('/api/v4', 1)[-1])}"
                      for c in stack.fake.calls() if c["time"] >= wall0)
        cpu = {k: cpu1[k] - cpu0.get(k, 0) for k in cpu1}
        cpu["bench (load gen)"] = (own1.user + own1.system) - (own0.user + own0.system)
        return {
            "n": n, "sent": len(results), "acked": len(acked), "processed": finished,
            "status": dict(Counter(r["status"] for r in results)),
            "offered_rate": len(results) / max(1e-9, send_end - first_sent),
            "lat": lat, "ack": ack, "lag": lag, "idle": idle_lat,
            "throughput": len(done_times) / max(1e-9, last_note - first_sent),
            "exactly_one": exactly_one, "missing": missing, "dupes": dupes,
            "worker_errors": errors, "reaper_requeues": reaped,
            "probe": probe.samples, "api": dict(api),
            "stall": {k: (psi1[k] - psi0[k]) / max(1e-9, drained - wall0) for k in psi1 if k in psi0},
            "redis_cmds": {k: v - cmd0.get(k, 0) for k, v in cmd1.items() if v - cmd0.get(k, 0)},
            "cpu": cpu, "wall": drained - wall0, "load": os.getloadavg(), "tmp": str(tmp),
        }
    finally:
        if profiler is not None and profiler.poll() is None:
            stop_profile(profiler)
        stack.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


# --- profiling -----------------------------------------------------------------------------

def start_profiler(stack: Stack, tmp: Path, seconds: float) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(spy):
        print("  --profile: py-spy not found (.venv/bin/python -m pip install py-spy)", file=sys.stderr)
        return None
    out = HERE / "profile-worker.txt"
    leader = stack.groups["celery"][0].pid
    proc = spawn([spy, "record", "--pid", str(leader), "--subprocesses", "--rate", "100",
                  "--format", "raw", "--idle", "--output", str(out), "--duration", str(int(seconds) + 1),
                  "--nonblocking"], dict(os.environ), tmp / "py-spy.log")
    proc.out = out  # type: ignore[attr-defined]
    return proc


def stop_profile(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    stop_group(proc)
    out: Path = proc.out  # type: ignore[attr-defined]
    if out.exists():
        summarize_profile(out)


WAITS = ("_read_from_socket", "readinto", "create_connection", "_real_close",
         "send_packed_command", "HTTPConnection.send", "sendall")


def summarize_profile(path: Path, top: int = 12) -> None:
    """Samples of the pool processes' task threads: waiting on a socket (Redis or GitLab) vs
    on CPU, by library, and the heaviest of our functions on CPU."""
    cats: Counter = Counter()
    incl: Counter = Counter()
    on_cpu = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or "trace_task" not in stack \
                or sum(f.startswith("process ") for f in frames) < 2:
            continue
        c = int(count)
        start = next(k for k, f in enumerate(frames) if "trace_task" in f)
        task = ";".join(frames[start:])
        if any(w in frames[-1] for w in WAITS):
            cats["waiting: Redis reply" if "redis/" in ";".join(frames[-6:])
                 else "waiting: GitLab HTTP (connect/send/read)"] += c
            continue
        on_cpu += c
        cats[next((label for needle, label in (
            ("gitlab/base.py", "CPU: python-gitlab object construction"),
            ("tasks/rules", "CPU: rules engine"), ("requests/", "CPU: requests/urllib3"),
            ("urllib3", "CPU: requests/urllib3"), ("http/client", "CPU: requests/urllib3"),
            ("gitlab/", "CPU: python-gitlab other"), ("redis/", "CPU: redis-py"),
            ("logging", "CPU: logging")) if needle in task), "CPU: other")] += c
        seen = set()
        for f in frames[start:]:
            name = f.split(" (")[0] + " (" + f.split(" (")[1].rsplit(":", 1)[0] + ")" \
                if " (" in f else f
            if name not in seen and "tasks/" in name:
                seen.add(name)
                incl[name] += c
    total = sum(cats.values())
    if not total:
        return
    print(f"\nprofile of worker 0's pool processes (py-spy, {total} samples in tasks; raw "
          f"stacks in {path}):")
    for k, v in cats.most_common():
        print(f"  {100 * v / total:5.1f}%  {k}")
    print("  our functions, share of the on-CPU task samples (inclusive):")
    for k, v in incl.most_common(top):
        print(f"  {100 * v / max(1, on_cpu):5.1f}%  {k}")


def _short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file.replace(str(ROOT) + "/", "")


# --- report --------------------------------------------------------------------------------

def ms(x: float) -> str:
    return f"{1000 * x:8.0f}"


def report(runs: list[dict], args: argparse.Namespace) -> int:
    ok = True
    print()
    print(f"{'run':>4} {'n':>5} {'offered/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
          f"{'comments/s':>10} {'1 comment':>10} {'ack p50':>8} {'ack p95':>8} {'idle p50':>8} "
          f"{'p95/idle':>8}  load")
    for k, r in enumerate(runs, 1):
        lat, idle = r["lat"], r["idle"]
        ratio = pct(lat, 95) / statistics.median(idle) if lat and idle else float("nan")
        print(f"{k:>4} {r['n']:>5} {r['offered_rate']:>9.1f} {ms(pct(lat, 50))} {ms(pct(lat, 95))} "
              f"{ms(max(lat) if lat else float('nan'))} {r['throughput']:>10.1f} "
              f"{r['exactly_one']:>5}/{r['n']:<4} {ms(pct(r['ack'], 50))} {ms(pct(r['ack'], 95))} "
              f"{ms(statistics.median(idle))} {ratio:>7.1f}x  "
              + " ".join(f"{x:.2f}" for x in r["load"]))
        if r["exactly_one"] != r["n"] or pct(lat, 95) >= GOAL_P95_S:
            ok = False
    verdict = "MET" if ok else "NOT MET"
    if args.rate < GOAL_RATE:
        every = all(r["exactly_one"] == r["n"] for r in runs)
        verdict = (f"not evaluated at {args.rate:g}/s (exactly one comment per delivery: "
                   f"{'yes' if every else 'NO'})")
    for k, r in enumerate(runs, 1):
        extra = []
        if r["missing"] or r["dupes"]:
            extra.append(f"missing {r['missing']}, duplicated {r['dupes']}")
        if r["status"].get(202, 0) != r["n"]:
            extra.append(f"HTTP statuses {r['status']}")
        if r["worker_errors"]:
            extra.append(f"{r['worker_errors']} error lines in worker logs")
        if r["reaper_requeues"]:
            extra.append(f"reaper re-enqueued {r['reaper_requeues']} queued, not yet started "
                         f"deliveries (older than REDELIVER_AFTER_SECONDS)")
        cpu = ", ".join(f"{name} {1000 * v / max(1, r['n']):.0f}" for name, v in r["cpu"].items())
        print(f"run {k}: CPU ms per delivery: {cpu}; total "
              f"{1000 * sum(r['cpu'].values()) / max(1, r['n']):.0f} ms over {r['wall']:.1f} s wall "
              f"({sum(r['cpu'].values()) / max(1e-9, r['wall']):.2f} cores busy); "
              f"send lag p95 {ms(pct(r['lag'], 95)).strip()} ms"
              + ("; " + "; ".join(extra) if extra else ""))
        stall = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["stall"].items())
        print(f"run {k}: machine while loaded: PSI stall (some) {stall or 'n/a'}; "
              f"fsynced Redis SET p50 {1000 * pct(r['probe'], 50):.1f} ms, "
              f"p95 {1000 * pct(r['probe'], 95):.1f} ms, max {1000 * max(r['probe'] or [0]):.1f} ms")
        api = Counter(r["api"])
        print(f"run {k}: GitLab API calls per delivery: {sum(api.values()) / max(1, r['n']):.1f} ("
              + ", ".join(f"{c} {v / max(1, r['n']):.2f}" for c, v in api.most_common(6)) + ", ...)")
        cmds = Counter(r["redis_cmds"])
        print(f"run {k}: Redis commands per delivery: {sum(cmds.values()) / max(1, r['n']):.1f} ("
              + ", ".join(f"{c} {v / max(1, r['n']):.1f}" for c, v in cmds.most_common(8)) + ")")
    if len(runs) > 1:
        p95s = [pct(r["lat"], 95) for r in runs]
        tps = [r["throughput"] for r in runs]
        print(f"spread over {len(runs)} runs: p95 {min(p95s):.2f}-{max(p95s):.2f} s, "
              f"comments/s {min(tps):.1f}-{max(tps):.1f}")
    print(f"\ngoal (issue 4): p95 delivery -> comment < {GOAL_P95_S:.0f} s at "
          f"{GOAL_RATE:.0f} deliveries/s, every delivery exactly one comment: "
          f"{verdict} (this run: {args.rate:g}/s for {args.duration:g} s, "
          f"{args.workers} worker process(es) x concurrency {args.concurrency}, cores: {os.cpu_count()})")
    if args.rate < GOAL_RATE:
        return 0 if all(r["exactly_one"] == r["n"] for r in runs) else 1
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=50.0, help="deliveries per second (open loop)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load (n = rate x duration)")
    ap.add_argument("--count", type=int, default=0, help="number of deliveries (overrides --duration)")
    ap.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    ap.add_argument("--concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2")),
                    help="Celery concurrency per worker process (default: WORKER_CONCURRENCY or 2)")
    ap.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    ap.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    ap.add_argument("--redis-fsync", default="always", choices=["always", "everysec", "no"],
                    help="appendfsync of the bench's redis-server (always: what `serve` runs)")
    ap.add_argument("--mix", default="mixed", choices=["mixed", "runner", "pytest"],
                    help="failed job per pipeline: runner system failure (retried), pytest failure "
                         "(fix issue), or alternating")
    ap.add_argument("--threads", type=int, default=32, help="sender threads of the load generator")
    ap.add_argument("--warmup", type=int, default=4, help="deliveries before measuring (not counted)")
    ap.add_argument("--idle", type=int, default=5, help="one-at-a-time deliveries for the idle baseline")
    ap.add_argument("--drain-timeout", type=float, default=180.0,
                    help="longest wait for the backlog to be processed after the load")
    ap.add_argument("--grace", type=float, default=1.0, help="wait after draining, to see duplicates")
    ap.add_argument("--repeats", type=int, default=1, help="fresh stack per repeat")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--profile", action="store_true", help="py-spy the first worker during run 1")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with all process logs")
    ap.add_argument("--json", type=Path, help="also write the raw per-run numbers here")
    args = ap.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.drain_timeout <= 0:
        ap.error("--rate, --duration and --drain-timeout must be positive")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    print(f"bench e2e: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, cores "
          f"{os.cpu_count()}, load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
          flush=True)
    runs = []
    try:
        for k in range(1, args.repeats + 1):
            runs.append(run_once(args, k))
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        stop_all()
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return report(runs, args)


if __name__ == "__main__":
    sys.exit(main())
