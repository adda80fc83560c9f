"""The fake's WSGI application: auth, faults, call records, pagination and JSON around
`service.Api` (the GitLab semantics, shared with the recording fake), plus the `/__fake__/`
control API used to seed state and read records over HTTP."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from werkzeug.wrappers import Request, Response

from .service import Api, Result
from .state import FakeError, FakeState

API = "/api/v4"


class Fault:
    """One injected misbehaviour: the next `count` matching calls (None = all) get `status`
    (with `Retry-After` for 429) and/or are delayed by `delay` seconds."""

    def __init__(self, path_re: str = ".*", method: str | None = None, status: int | None = None,
                 count: int | None = 1, retry_after: float | None = None, delay: float = 0.0,
                 body: Any = None) -> None:
        self.path_re, self.method, self.status = re.compile(path_re), method, status
        self.count, self.retry_after, self.delay, self.body = count, retry_after, delay, body

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method.upper() == method)
                and self.path_re.search(path) is not None
                and (self.count is None or self.count > 0))


class FakeGitLabApp:
    def __init__(self, state: FakeState | None = None) -> None:
        self.state = state or FakeState()
        self.api = Api(self.state)
        self.calls: list[dict] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._seq = 0

    # -- WSGI entry ------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(request.path)
        raw_path = raw.split("?", 1)[0]
        if "://" in raw_path:  # absolute-form request target
            raw_path = "/" + raw_path.split("://", 1)[1].split("/", 1)[1]
        if raw_path.startswith("/__fake__/"):
            return self._control(request, raw_path)(environ, start_response)
        started = time.monotonic()
        body = self._json_body(request)
        # Recorded on arrival (status None until answered), so a call whose client gave up
        # during an injected delay still shows up.
        with self._lock:
            self._seq += 1
            call = {
                "seq": self._seq, "time": time.time(), "method": request.method,
                "path": raw_path, "query": _flat_query(request.query_string.decode()),
                "json": body, "status": None, "fault": None, "duration": None,
            }
            self.calls.append(call)
        response, fault_name = self._handle(request, raw_path, body)
        with self._lock:
            call.update(status=response.status_code, fault=fault_name,
                        duration=round(time.monotonic() - started, 4))
        return response(environ, start_response)

    @staticmethod
    def _json_body(request: Request) -> Any:
        data = request.get_data(cache=True)
        if not data:
            return None
        if request.mimetype == "application/json":
            try:
                return json.loads(data)
            except ValueError:
                return {"__invalid_json__": data.decode(errors="replace")}
        if request.mimetype == "application/x-www-form-urlencoded":
            return {k: v[0] if len(v) == 1 else v for k, v in parse_qs(data.decode()).items()}
        return None

    def _handle(self, request: Request, raw_path: str, body: Any) -> tuple[Response, str | None]:
        method = request.method
        fault = None
        with self._lock:
            for f in self.faults:
                if f.matches(method, raw_path):
                    if f.count is not None:
                        f.count -= 1
                    fault = f
                    break
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = _num(fault.retry_after)
                    headers["RateLimit-Reset"] = str(int(time.time() + float(fault.retry_after)))
                if fault.status == 429:
                    headers.update({"RateLimit-Limit": "600", "RateLimit-Remaining": "0",
                                    "RateLimit-Observed": "601"})
                default = {429: "Retry later", 500: "500 Internal Server Error",
                           502: "502 Bad Gateway", 503: "503 Service Unavailable"}
                payload = fault.body if fault.body is not None else {
                    "message": default.get(fault.status, f"{fault.status} Error")}
                return _json(payload, fault.status, headers), f"status:{fault.status}"
        if not raw_path.startswith(API + "/"):
            return _json({"error": "404 Not Found"}, 404), None
        path = raw_path[len(API):]
        tag = "delay" if fault else None
        try:
            user = self.state.user_for_token(
                request.headers.get("PRIVATE-TOKEN")
                or _bearer(request.headers.get("Authorization", "")))
            if user is None:
                raise FakeError(401, "401 Unauthorized")
            params = {**_flat_query(request.query_string.decode(), arrays=True),
                      **(body if isinstance(body, dict) else {})}
            result = self.api.dispatch(request.method, path, user, params)
            return self._respond(request, raw_path, params, result), tag
        except FakeError as e:
            return _json(e.body, e.status), tag

    def _respond(self, request: Request, raw_path: str, params: dict, result: Result) -> Response:
        if result.raw is not None:
            chunks, delay = result.raw, result.delay

            def stream():
                for chunk in chunks:
                    if delay:
                        time.sleep(delay)
                    yield chunk

            resp = Response(stream(), result.status, content_type=result.content_type,
                            direct_passthrough=True)
            if result.size is not None:
                resp.headers["Content-Length"] = str(result.size)
            return resp
        if result.paginate:
            return self._page(request, raw_path, params, result.payload)
        return _json(result.payload, result.status)

    # -- control API -----------------------------------------------------------------------
    def _control(self, request: Request, path: str) -> Response:
        try:
            body = self._json_body(request) or {}
            name = path[len("/__fake__/"):].strip("/")
            if name == "health":
                return _json({"ok": True})
            if name == "reset":
                with self._lock:
                    self.calls.clear()
                    self.faults.clear()
                self.state.reset()
                return _json({"ok": True})
            if name == "calls":
                if request.method == "DELETE":
                    with self._lock:
                        self.calls.clear()
                    return _json({"ok": True})
                q = _flat_query(request.query_string.decode())
                return _json(self.find_calls(q.get("method"), q.get("path_re")))
            if name == "faults":
                with self._lock:
                    if request.method == "DELETE":
                        self.faults.clear()
                    else:
                        self.faults.append(Fault(**body))
                return _json({"ok": True, "faults": len(self.faults)})
            if name == "side_effects":
                with self.state.lock:
                    return _json(list(self.state.side_effects))
            if name == "state":
                return _json(self.state.snapshot())
            if name == "seed":
                return _json(self.state.seed(**body))
            if name.startswith("op/"):
                op = name[3:]
                if op not in FakeState.OPS:
                    return _json({"error": f"unknown op {op}"}, 404)
                return _json(getattr(self.state, op)(**body))
            return _json({"error": f"unknown control path {path}"}, 404)
        except FakeError as e:
            return _json(e.body, e.status)
        except (TypeError, ValueError, KeyError) as e:
            return _json({"error": f"{type(e).__name__}: {e}"}, 400)

    def find_calls(self, method: str | None = None, path_re: str | None = None) -> list[dict]:
        rx = re.compile(path_re) if path_re else None
        with self._lock:
            return [dict(c) for c in self.calls
                    if (method is None or c["method"] == method.upper())
                    and (rx is None or rx.search(c["path"]))]

    # -- pagination --------------------------------------------------------------------------
    def _page(self, request: Request, raw_path: str, params: dict, items: list) -> Response:
        """Offset pagination with GitLab's headers; `Link` carries absolute URLs that keep the
        caller's other query parameters, which is what python-gitlab follows."""
        try:
            page = max(1, int(params.get("page", 1)))
            per_page = int(params.get("per_page", 20))
        except (TypeError, ValueError):
            raise FakeError(400, "page is invalid", key="error") from None
        per_page = 20 if per_page < 1 else min(per_page, 100)
        total = len(items)
        pages = max(1, -(-total // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        resp = _json(chunk)
        h = resp.headers
        h["X-Page"], h["X-Per-Page"] = str(page), str(per_page)
        h["X-Total"], h["X-Total-Pages"] = str(total), str(pages)
        h["X-Next-Page"] = str(page + 1) if page < pages else ""
        h["X-Prev-Page"] = str(page - 1) if page > 1 else ""
        base = request.host_url.rstrip("/") + raw_path
        query = {k: v for k, v in _flat_query(request.query_string.decode(), arrays=True).items()
                 if k not in ("page", "per_page")}

        def link(n: int) -> str:
            return base + "?" + urlencode({**query, "page": n, "per_page": per_page}, doseq=True)

        links = []
        if page > 1:
            links.append(f'<{link(page - 1)}>; rel="prev"')
        if page < pages:
            links.append(f'<{link(page + 1)}>; rel="next"')
        links.append(f'<{link(1)}>; rel="first"')
        links.append(f'<{link(pages)}>; rel="last"')
        h["Link"] = ", ".join(links)
        return resp


def _flat_query(qs: str, arrays: bool = False) -> dict:
    out: dict[str, Any] = {}
    for k, v in parse_qs(qs, keep_blank_values=True).items():
        out[k] = v if (len(v) > 1 or (arrays and k.endswith("[]"))) else v[0]
    return out


def _bearer(value: str) -> str | None:
    return value[7:] if value.lower().startswith("bearer ") else None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _json(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload, default=str), status,
                    headers=headers or {}, content_type="application/json")


__all__ = ["FakeGitLabApp", "Fault"]
