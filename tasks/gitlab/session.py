"""The plumbing under the GitLab adapter's calls: one python-gitlab client with a bounded retry
for every request, Retry-After read before python-gitlab sleeps on it, errors typed
(tasks/gitlab/errors.py), and every write in one place, where dry-run mode stops it.

Retries: python-gitlab already retries 429 (honouring Retry-After) and, with
`retry_transient_errors=True`, 5xx and connection errors. We keep that single layer and bound
it: at most `max_retries` retries per HTTP request (python-gitlab's default is 10 and it will
sleep for whatever Retry-After says). POSTs retry 429 only: a POST that got a 5xx or timed out
may have been applied, and sending it again could double a comment or a job retry. A
Retry-After longer than `max_retry_wait` is not slept through in a worker: the call fails at
once with `RateLimited(retry_after=...)`, and the engine runs the work again no sooner than
that (tasks/engine/errors.py) instead of stacking another layer.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import gitlab
import gitlab.exceptions as gl_exc
import requests

from tasks.gitlab.errors import GitLabError, GitLabUnavailable, RateLimited, from_gitlab

log = logging.getLogger("devops_agent.gitlab")

T = TypeVar("T")
ProjectRef = int | str
KINDS = ("issue", "mr")


class Session:
    """What every call goes through; GitLabAdapter (tasks/gitlab/client.py) is the calls."""

    def __init__(self, url: str, token: str, *, timeout: float = 10,
                 max_log_bytes: int = 8 * 1024 * 1024, dry_run: bool = False,
                 per_page: int = 100, max_retries: int = 3,
                 max_retry_wait: float = 30.0, log_chunk_bytes: int = 64 * 1024,
                 max_log_seconds: float = 120.0) -> None:
        if max_log_bytes <= 0:
            raise ValueError("max_log_bytes must be positive")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_log_bytes = max_log_bytes
        self.dry_run = dry_run
        self.per_page = per_page
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.log_chunk_bytes = log_chunk_bytes
        self.max_log_seconds = max_log_seconds
        self._secret = token
        self._local = threading.local()  # last Retry-After seen, per calling thread
        self._projects: dict[Any, Any] = {}  # lazy Project objects: ~100 managers to build
        session = requests.Session()
        session.hooks["response"].append(self._check_retry_after)
        self._gl = _BoundedGitlab(self.url, private_token=token, timeout=timeout,
                                  retry_transient_errors=True, session=session,
                                  max_retries=max_retries, per_page=per_page)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, dry_run={self.dry_run})"

    def close(self) -> None:
        self._gl.session.close()

    # -- plumbing ----------------------------------------------------------------------------
    def _check_retry_after(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """requests response hook, before python-gitlab's retry loop sees the response:
        normalise Retry-After to whole seconds (python-gitlab int()s it and would crash on an
        HTTP date or a fraction) and refuse to sleep longer than `max_retry_wait`."""
        if response.status_code != 429:
            return
        headers = response.headers
        wait = _parse_retry_after(headers["Retry-After"]) if "Retry-After" in headers else None
        if wait is None and "RateLimit-Reset" in headers:  # python-gitlab's fallback: epoch
            try:
                wait = max(0.0, float(headers["RateLimit-Reset"]) - time.time())
            except ValueError:
                wait = None
        headers.pop("Retry-After", None)
        headers.pop("RateLimit-Reset", None)
        self._local.retry_after = wait
        if wait is None:
            return  # python-gitlab backs off exponentially (0.1 s, 0.2 s, ...)
        if wait > self.max_retry_wait:
            response.close()
            raise RateLimited(f"GitLab rate limit: retry after {wait:g}s "
                              f"({response.request.method} {_path(response.url)})",
                              retry_after=wait)
        headers["Retry-After"] = str(math.ceil(wait))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one python-gitlab operation, translating its errors into ours."""
        try:
            return fn()
        except GitLabError:
            raise
        except gl_exc.GitlabError as e:
            raise from_gitlab(self._scrub(f"{what}: HTTP {e.response_code}: {e.error_message}"),
                              e.response_code, getattr(self._local, "retry_after", None)) from None
        except (requests.Timeout, requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError) as e:
            raise GitLabUnavailable(self._scrub(f"{what}: {type(e).__name__}: {e}")) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "[REDACTED]") if self._secret else text

    def _project(self, project: ProjectRef) -> Any:
        # lazy: no GET, python-gitlab URL-encodes a path id ("group%2Fproj"). Building one
        # constructs every sub-manager (~0.3 ms, 23% of a worker's CPU in bench/e2e), so keep
        # them: they hold no per-call state.
        obj = self._projects.get(project)
        if obj is None:
            if len(self._projects) >= 1024:
                self._projects.clear()
            obj = self._projects[project] = self._gl.projects.get(project, lazy=True)
        return obj

    def _noteable(self, project: ProjectRef, kind: str, iid: int) -> Any:
        if kind not in KINDS:
            raise ValueError(f"kind must be 'issue' or 'mr', not {kind!r}")
        p = self._project(project)
        mgr = p.issues if kind == "issue" else p.mergerequests
        return mgr.get(iid, lazy=True)

    def _write(self, action: str, project: ProjectRef, fields: dict,
               send: Callable[[], T]) -> T | dict:
        """Every write goes through here: in dry-run it is logged and not sent."""
        if self.dry_run:
            log.info("dry-run: %s on %s", action, project,
                     extra={"dry_run": True, "action": action, "project": project,
                            "fields": fields})
            return {"dry_run": True, "action": action, "project": project, **fields}
        return self._call(action, send)

    @staticmethod
    def _plain(obj: Any) -> dict:
        return obj.asdict() if hasattr(obj, "asdict") else dict(obj)

    def _list(self, what: str, lister: Callable[..., Iterable[Any]], **filters: Any) -> list[dict]:
        query = {k: v for k, v in filters.items() if v is not None}
        return self._call(what, lambda: [self._plain(o) for o in
                                         lister(get_all=True, per_page=self.per_page, **query)])

    def _first(self, limit: int, what: str, lister: Callable[..., Any], **filters: Any) -> list[dict]:
        """At most `limit` items, reading pages only as far as needed."""
        query = {k: v for k, v in filters.items() if v is not None}
        per_page = max(1, min(100, limit))

        def read() -> list[dict]:
            out: list[dict] = []
            for obj in lister(iterator=True, per_page=per_page, **query):
                out.append(self._plain(obj))
                if len(out) >= limit:
                    break
            return out

        return self._call(what, read)


class _BoundedGitlab(gitlab.Gitlab):
    """python-gitlab with one retry bound for every request (its default is 10 per call, and
    list pagination passes its own). Total attempts per HTTP request: 1 + max_retries."""

    def __init__(self, *args: Any, max_retries: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_retries = max_retries

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["max_retries"] = self._max_retries
        kwargs["obey_rate_limit"] = True
        # A POST answered 5xx, or timed out, may still have been applied (a proxy's 502 after
        # GitLab created the note): sending it again could double a comment or a job retry.
        # So only idempotent verbs retry transient errors; every verb retries 429, which
        # GitLab answers before doing anything.
        kwargs["retry_transient_errors"] = verb.lower() != "post"
        return super().http_request(verb, path, *args, **kwargs)


def _path(url: str | None) -> str:
    """The path of a URL without its query (which could carry anything)."""
    return urlsplit(url or "").path


def _parse_retry_after(raw: str) -> float | None:
    """Retry-After is delta-seconds or an HTTP date."""
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
