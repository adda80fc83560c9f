"""Running the fake: in a background thread or as a subprocess, and one control client for both."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from .app import FakeGitLabApp
from .state import BOT_TOKEN, FakeState

REPO_ROOT = Path(__file__).resolve().parents[3]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # no access log in test output
        pass


class FakeGitLabControl:
    """Seeds state and reads records over `/__fake__/`: the same API whether the fake runs in
    this process or in another one."""

    def __init__(self, url: str, token: str = BOT_TOKEN) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._http = requests.Session()

    # plumbing
    def _post(self, path: str, payload: Any = None) -> Any:
        r = self._http.post(f"{self.url}/__fake__/{path}", json=payload or {}, timeout=30)
        if r.status_code >= 400:
            raise RuntimeError(f"fake control {path}: {r.status_code} {r.text}")
        return r.json()

    def _get(self, path: str, params: dict | None = None) -> Any:
        r = self._http.get(f"{self.url}/__fake__/{path}", params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def op(self, op_name: str, /, **kwargs: Any) -> Any:
        """Call any FakeState op (see FakeState.OPS) with JSON-able keyword arguments."""
        return self._post(f"op/{op_name}", kwargs)

    # lifecycle and records
    def reset(self) -> None:
        self._post("reset")

    def seed(self, users: Iterable[dict] = (), projects: Iterable[dict] = ()) -> dict:
        return self._post("seed", {"users": list(users), "projects": list(projects)})

    def calls(self, method: str | None = None, path_re: str | None = None) -> list[dict]:
        """Recorded API calls (control calls excluded), oldest first, optionally filtered by
        method and a regex searched in the raw path (e.g. r"/jobs/\\d+/retry")."""
        params = {k: v for k, v in (("method", method), ("path_re", path_re)) if v}
        return self._get("calls", params)

    def clear_calls(self) -> None:
        self._http.delete(f"{self.url}/__fake__/calls", timeout=30).raise_for_status()

    def write_calls(self) -> list[dict]:
        return [c for c in self.calls() if c["method"] in ("POST", "PUT", "PATCH", "DELETE")]

    def side_effects(self) -> list[str]:
        return self._get("side_effects")

    def snapshot(self) -> dict:
        return self._get("state")

    def fault(self, path_re: str = ".*", *, method: str | None = None, status: int | None = None,
              count: int | None = 1, retry_after: float | None = None, delay: float = 0.0,
              body: Any = None) -> None:
        """The next `count` calls (None: every call) matching `method` and `path_re` answer
        `status` (429 adds Retry-After when given) and/or wait `delay` seconds first."""
        self._post("faults", {"path_re": path_re, "method": method, "status": status,
                              "count": count, "retry_after": retry_after, "delay": delay,
                              "body": body})

    def clear_faults(self) -> None:
        self._http.delete(f"{self.url}/__fake__/faults", timeout=30).raise_for_status()

    # seeding shortcuts (arguments as in FakeState)
    def add_user(self, username: str, **kw: Any) -> dict:
        return self.op("add_user", username=username, **kw)

    def add_project(self, path: str, **kw: Any) -> dict:
        return self.op("add_project", path=path, **kw)

    def add_member(self, project: Any, user_id: int, access_level: int) -> dict:
        return self.op("add_member", project=project, user_id=user_id, access_level=access_level)

    def add_pipeline(self, project: Any, **kw: Any) -> dict:
        return self.op("add_pipeline", project=project, **kw)

    def add_job(self, project: Any, pipeline_id: int, name: str, **kw: Any) -> dict:
        return self.op("add_job", project=project, pipeline_id=pipeline_id, name=name, **kw)

    def set_job_status(self, job_id: int, status: str, failure_reason: str | None = None) -> dict:
        return self.op("set_job_status", job_id=job_id, status=status,
                       failure_reason=failure_reason)

    def set_pipeline_status(self, pipeline_id: int, status: str) -> dict:
        return self.op("set_pipeline_status", pipeline_id=pipeline_id, status=status)

    def set_trace(self, job_id: int, text: str | None = None, **kw: Any) -> dict:
        return self.op("set_trace", job_id=job_id, text=text, **kw)

    def set_test_report(self, project: Any, pipeline_id: int, report: dict) -> dict:
        return self.op("set_test_report", project=project, pipeline_id=pipeline_id, report=report)

    def add_issue(self, project: Any, title: str, **kw: Any) -> dict:
        return self.op("add_issue", project=project, title=title, **kw)

    def add_mr(self, project: Any, title: str, source_branch: str, **kw: Any) -> dict:
        return self.op("add_mr", project=project, title=title, source_branch=source_branch, **kw)

    def approve_mr(self, project: Any, iid: int, user_id: int) -> dict:
        return self.op("approve_mr", project=project, iid=iid, user_id=user_id)

    def add_note(self, project: Any, kind: str, iid: int, body: str, **kw: Any) -> dict:
        return self.op("add_note", project=project, kind=kind, iid=iid, body=body, **kw)

    def add_freeze_period(self, project: Any, freeze_start: str, freeze_end: str,
                          cron_timezone: str = "UTC") -> dict:
        return self.op("add_freeze_period", project=project, freeze_start=freeze_start,
                       freeze_end=freeze_end, cron_timezone=cron_timezone)

    def add_label(self, project: Any, name: str, **kw: Any) -> dict:
        return self.op("add_label", project=project, name=name, **kw)

    def add_branch(self, project: Any, name: str, **kw: Any) -> dict:
        return self.op("add_branch", project=project, name=name, **kw)

    def protect_branch(self, project: Any, name: str, **kw: Any) -> dict:
        return self.op("protect_branch", project=project, name=name, **kw)

    def push_commit(self, project: Any, branch: str, files: dict | None = None,
                    **kw: Any) -> dict:
        """Someone pushes `files` to `branch`: the head and MR shas move (see FakeState)."""
        return self.op("push_commit", project=project, branch=branch, files=files, **kw)

    def edit_note(self, project: Any, kind: str, iid: int, note_id: int, body: str,
                  user_id: int | None = None) -> dict:
        """A person (the note's author by default) edits a note."""
        return self.op("edit_note", project=project, kind=kind, iid=iid, note_id=note_id,
                       body=body, user_id=user_id)

    def relabel_as(self, project: Any, kind: str, iid: int, user_id: int,
                   add: Iterable[str] = (), remove: Iterable[str] = ()) -> dict:
        return self.op("relabel_as", project=project, kind=kind, iid=iid, user_id=user_id,
                       add=list(add), remove=list(remove))

    def unapprove_mr(self, project: Any, iid: int, user_id: int) -> dict:
        return self.op("unapprove_mr", project=project, iid=iid, user_id=user_id)

    def set_project(self, project: Any, **settings: Any) -> dict:
        return self.op("set_project", project=project, **settings)

    def set_time(self, now: str) -> dict:
        return self.op("set_time", now=now)

    def advance_time(self, seconds: float) -> dict:
        return self.op("advance_time", seconds=seconds)


class FakeGitLabServer(FakeGitLabControl):
    """The fake in a background thread of this process.

        with FakeGitLabServer() as fake:
            fake.add_project("group/proj", id=1)
            gl = gitlab.Gitlab(fake.url, private_token=fake.token)

    `fake.state` and `fake.app` are also reachable directly, but tests that may later run
    against the subprocess should stick to the control methods.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = FakeState()
        self.app = FakeGitLabApp(self.state)
        self._server = make_server(host, port, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self._server.daemon_threads = True
        url = f"http://{host}:{self._server.server_port}"
        self.state.base_url = url
        self.state.reset()  # rebuild the bot user's web_url with the real address
        super().__init__(url)
        self._thread: threading.Thread | None = None

    def start(self) -> FakeGitLabServer:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fake-gitlab", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> FakeGitLabServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class FakeGitLabProcess(FakeGitLabControl):
    """The fake as a child process (`python -m tests.support.fake_gitlab --port 0`), reachable
    from other processes such as real Celery workers."""

    def __init__(self, port: int = 0, seed_file: str | os.PathLike | None = None) -> None:
        self._port, self._seed_file = port, seed_file
        self.proc: subprocess.Popen | None = None
        super().__init__("http://127.0.0.1:0")

    def start(self, timeout: float = 20.0) -> FakeGitLabProcess:
        cmd = [sys.executable, "-m", "tests.support.fake_gitlab", "--port", str(self._port)]
        if self._seed_file:
            cmd += ["--state", str(self._seed_file)]
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        # The first stdout line is the URL; select() so a child that hangs cannot block us.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"fake GitLab did not start: {line!r}")
        self.url = line.strip()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self._http.close()

    def __enter__(self) -> FakeGitLabProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(port: int, seed_file: str | None = None, host: str = "127.0.0.1") -> None:
    """Entry point of the subprocess mode: print the URL on the first line, then serve."""
    state = FakeState()
    app = FakeGitLabApp(state)
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    server.daemon_threads = True
    url = f"http://{host}:{server.server_port}"
    state.base_url = url
    state.reset()
    if seed_file:
        state.seed(**json.loads(Path(seed_file).read_text()))
    print(url, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
