"""A fake Kubernetes API server (apps/v1 Deployments + ReplicaSets, core/v1 Services + Pods).

The real `kubernetes` Python client talks to it over HTTP, so the adapter, the serialisation and
the content types are exercised for real. Modelled from the API reference and the deployment
controller's documented behaviour:

- objects carry `metadata.uid`, `resourceVersion` (one global counter, bumped on every write,
  controller writes included) and, for Deployments, `metadata.generation` (bumped only when the
  spec changes); a PUT or a PATCH that names a stale `resourceVersion` gets 409 Conflict;
- PATCH understands the three content types the client can send: strategic merge patch (the
  client's default for a dict body), JSON patch (RFC 6902, the client's choice for a list body)
  and JSON merge patch (RFC 7386); anything else is 415;
- a small deployment controller runs lazily before every request: a changed pod template creates
  (or, on a rollback, re-uses) a ReplicaSet labelled `pod-template-hash` and annotated
  `deployment.kubernetes.io/revision`, the new RS scales up and old ones down within
  maxSurge/maxUnavailable, pods become ready after `ready_after` seconds, and the Deployment status
  (observedGeneration, replicas, updatedReplicas, readyReplicas, availableReplicas, conditions
  Available/Progressing with ProgressDeadlineExceeded) follows.

Knobs, per image (`image_behavior`) or per Deployment name (`behavior`): "ready" (default),
"never_ready", "deadline" (never ready, and Progressing turns False/ProgressDeadlineExceeded after
`deadline_after` seconds). `inject_error(method, path_regex, status)` makes the next matching
request(s) fail; `slow_response(method, path_regex, seconds)` applies the next matching request(s)
at once and answers late (a client can die while it waits); `on_write(fn)` calls `fn(fake, plural,
namespace, name)` after every write a client makes, so a test can play another actor reacting to
it (an autoscaler scaling a Deployment with `scale()`). What it does not model is listed in the
README (Deploys: Testing without a cluster).

Also here: `FakeHTTP`, a tiny server for health endpoints and Prometheus `/api/v1/query` whose
answers tests set. Run alone with `python -m tests.support.fake_kube --port P`.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import itertools
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"

SMP = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"

APPLY_PATCH = "application/apply-patch+yaml"

# `/namespaces/<ns>` is optional: cluster-scoped kinds (Namespace, ClusterRole) live without one
_PATH = re.compile(
    r"^/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<kind>[a-z]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|scale))?/?$"
)
_KINDS = {  # plural -> (group prefix, Kind, apiVersion)
    "deployments": ("/apis/apps/v1", "Deployment", "apps/v1"),
    "replicasets": ("/apis/apps/v1", "ReplicaSet", "apps/v1"),
    "services": ("/api/v1", "Service", "v1"),
    "pods": ("/api/v1", "Pod", "v1"),
    "configmaps": ("/api/v1", "ConfigMap", "v1"),
    "secrets": ("/api/v1", "Secret", "v1"),
    # a generic namespaced custom resource, as a CRD would serve it
    "widgets": ("/apis/example.com/v1", "Widget", "example.com/v1"),
    # cluster-scoped
    "namespaces": ("/api/v1", "Namespace", "v1"),
    "clusterroles": ("/apis/rbac.authorization.k8s.io/v1", "ClusterRole",
                     "rbac.authorization.k8s.io/v1"),
}
CLUSTER_SCOPED = {"namespaces", "clusterroles"}


def now_rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(t if t is not None else time.time(), UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details,
                "code": self.code}


# --------------------------------------------------------------------------------- patches

# patchMergeKey of the list fields we meet in apps/v1 and core/v1 (from the OpenAPI
# x-kubernetes-patch-merge-key extensions). Lists without one are replaced wholesale.
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "imagePullSecrets": "name", "conditions": "type", "ownerReferences": "uid",
    "hostAliases": "ip", "topologySpreadConstraints": "topologyKey",
}


def _merge_key(field_name: str, items: list) -> str | None:
    if field_name == "ports":  # container ports merge on containerPort, Service ports on port
        if any(isinstance(i, dict) and "containerPort" in i for i in items):
            return "containerPort"
        return "port"
    return _MERGE_KEYS.get(field_name)


def strategic_merge(orig: Any, patch: Any) -> Any:
    """Apply a strategic merge patch (the subset the client and kubectl produce)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):  # $retainKeys, $setElementOrder/..., $deleteFromPrimitiveList/...
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge(out.get(key), value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            mk = _merge_key(key, value)
            if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in value):
                out[key] = [copy.deepcopy(i) for i in value
                            if not (isinstance(i, dict) and i.get("$patch") == "replace")]
            elif mk and isinstance(out.get(key), list):
                out[key] = _merge_list(out[key], value, mk)
            else:
                out[key] = [strategic_merge(None, i) if isinstance(i, dict) else copy.deepcopy(i)
                            for i in value]
        else:
            out[key] = value
    return out


def _merge_list(orig: list, patch: list, key: str) -> list:
    result = copy.deepcopy(orig)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise ApiError(422, "Invalid", f"strategic merge patch: list item lacks merge key {key!r}")
        idx = next((i for i, e in enumerate(result) if isinstance(e, dict) and e.get(key) == item[key]),
                   None)
        if item.get("$patch") == "delete":
            if idx is not None:
                result.pop(idx)
        elif idx is None:
            result.append(strategic_merge(None, item))
        else:
            result[idx] = strategic_merge(result[idx], item)
    return result


def merge_patch(orig: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"json patch: bad path {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Any, ops: list) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    doc = copy.deepcopy(doc)

    def parent(parts: list[str]) -> tuple[Any, str]:
        cur = doc
        for p in parts[:-1]:
            try:
                cur = cur[int(p)] if isinstance(cur, list) else cur[p]
            except (KeyError, IndexError, ValueError):
                raise ApiError(422, "Invalid", f"json patch: path {'/'.join(parts)!r} not found") from None
        return cur, parts[-1]

    def get(parts: list[str]) -> Any:
        if not parts:
            return doc
        container, last = parent(parts)
        try:
            return container[int(last)] if isinstance(container, list) else container[last]
        except (KeyError, IndexError, ValueError):
            raise ApiError(422, "Invalid", f"json patch: path /{'/'.join(parts)} not found") from None

    def remove(parts: list[str]) -> Any:
        container, last = parent(parts)
        try:
            return container.pop(int(last)) if isinstance(container, list) else container.pop(last)
        except (KeyError, IndexError, ValueError):
            raise ApiError(422, "Invalid", f"json patch: cannot remove /{'/'.join(parts)}") from None

    def add(parts: list[str], value: Any) -> None:
        nonlocal doc
        if not parts:
            doc = value
            return
        container, last = parent(parts)
        if isinstance(container, list):
            if last == "-":
                container.append(value)
            else:
                container.insert(int(last), value)
        elif isinstance(container, dict):
            container[last] = value
        else:
            raise ApiError(422, "Invalid", "json patch: parent is not a container")

    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json patch body must be a list of operations")
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        if kind == "add":
            add(parts, copy.deepcopy(op["value"]))
        elif kind == "remove":
            remove(parts)
        elif kind == "replace":
            get(parts)  # the target must exist
            if not parts:
                doc = copy.deepcopy(op["value"])
            else:
                container, last = parent(parts)
                container[int(last) if isinstance(container, list) else last] = copy.deepcopy(op["value"])
        elif kind in ("move", "copy"):
            src = _pointer(op["from"])
            value = remove(src) if kind == "move" else copy.deepcopy(get(src))
            add(parts, value)
        elif kind == "test":
            if get(parts) != op.get("value"):
                raise ApiError(422, "Invalid", f"json patch: test failed at {op.get('path')}")
        else:
            raise ApiError(400, "BadRequest", f"json patch: unknown op {kind!r}")
    return doc


# ------------------------------------------------------------------- server-side apply

# Fields no manager owns: identity and server-set metadata, and status (its own subresource).
_UNOWNED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                 "managedFields", "deletionTimestamp", "selfLink"}
FieldPath = tuple[str, ...]


def _item_key(field_name: str, item: Any, items: list) -> str | None:
    """`k:{"name":"app"}` for an item of an associative list, None for an atomic list."""
    mk = _merge_key(field_name, items)
    if not mk or not isinstance(item, dict) or mk not in item:
        return None
    return "k:" + json.dumps({mk: item[mk]}, separators=(",", ":"))


def field_paths(obj: Any, prefix: FieldPath = (), top: bool = True) -> set[FieldPath]:
    """The leaf fields `obj` sets, as managedFields paths (`f:spec`, `f:replicas`, `k:{...}`).
    Maps recurse; lists with a merge key recurse by item; other lists and scalars are leaves."""
    out: set[FieldPath] = set()
    if not isinstance(obj, dict):
        return out
    for key, value in obj.items():
        if top and key in ("apiVersion", "kind", "status"):
            continue
        if top and key == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in _UNOWNED_META}
            out |= field_paths(meta, (*prefix, "f:metadata"), top=False)
            continue
        here = (*prefix, f"f:{key}")
        if isinstance(value, dict) and value:
            out |= field_paths(value, here, top=False)
        elif isinstance(value, list) and value and all(_item_key(key, i, value) for i in value):
            for item in value:
                item_path = (*here, str(_item_key(key, item, value)))
                out.add((*item_path, "."))
                out |= field_paths(item, item_path, top=False)
        else:
            out.add(here)
    return out


def field_value(obj: Any, path: FieldPath) -> Any:
    """The value at a managedFields path, or a sentinel string when absent."""
    cur = obj
    for seg in path:
        if seg == ".":
            return cur
        if seg.startswith("f:"):
            if not isinstance(cur, dict) or seg[2:] not in cur:
                return "\x00absent"
            cur = cur[seg[2:]]
        else:
            want = json.loads(seg[2:])
            cur = next((i for i in cur if isinstance(i, dict)
                        and all(i.get(k) == v for k, v in want.items())), "\x00absent") \
                if isinstance(cur, list) else "\x00absent"
            if cur == "\x00absent":
                return cur
    return cur


def fields_v1(paths: set[FieldPath]) -> dict:
    """Paths -> the FieldsV1 trie the API server stores (`{"f:spec": {"f:replicas": {}}}`)."""
    root: dict = {}
    for path in paths:
        node = root
        for seg in path:
            node = node.setdefault(seg, {})
    return root


def paths_of(v1: dict, prefix: FieldPath = ()) -> set[FieldPath]:
    out: set[FieldPath] = set()
    for seg, sub in (v1 or {}).items():
        if seg == "." or not sub:
            out.add((*prefix, seg))
        else:
            out |= paths_of(sub, (*prefix, seg))
    return out


def _dotted(path: FieldPath) -> str:
    """`.spec.template.spec.containers[name="app"].image`, as kubectl prints conflicts."""
    out = ""
    for seg in path:
        if seg.startswith("f:"):
            out += "." + seg[2:]
        elif seg.startswith("k:"):
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(seg[2:]).items()) + "]"
    return out


def _remove_path(obj: dict, path: FieldPath) -> None:
    """Drop the field (or associative-list item) at `path` when its parent still exists."""
    if path and path[-1] == ".":
        path = path[:-1]
    parent = field_value(obj, path[:-1]) if len(path) > 1 else obj
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        want = json.loads(last[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict)
                                               and all(i.get(k) == v for k, v in want.items()))]


def _apply_merge(live: Any, config: Any, field_name: str = "") -> Any:
    """Merge an applied configuration into the live object: maps field by field, associative
    lists item by item (by merge key), atomic lists and scalars replaced."""
    if isinstance(config, dict) and isinstance(live, dict):
        out = copy.deepcopy(live)
        for key, value in config.items():
            out[key] = _apply_merge(live.get(key), value, key) if key in live else copy.deepcopy(value)
        return out
    if isinstance(config, list) and isinstance(live, list) and config and \
            all(_item_key(field_name, i, config) for i in config):
        out_list = copy.deepcopy(live)
        for item in config:
            k = _item_key(field_name, item, config)
            idx = next((n for n, e in enumerate(out_list) if _item_key(field_name, e, out_list) == k), None)
            if idx is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[idx] = _apply_merge(out_list[idx], item)
        return out_list
    return copy.deepcopy(config)


def _entry(manager: str, operation: str, api_version: str, paths: set[FieldPath]) -> dict:
    return {"manager": manager, "operation": operation, "apiVersion": api_version,
            "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": fields_v1(paths)}


def _strip_marks(paths: set[FieldPath]) -> set[FieldPath]:
    return {p[:-1] if p[-1] == "." else p for p in paths}


# ------------------------------------------------------------------------- label selectors

_REQ = re.compile(r"\s*(!?)([A-Za-z0-9_./-]+)\s*"
                  r"(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*")


def parse_selector(text: str) -> Callable[[dict], bool]:
    """Label selector string (=, ==, !=, in, notin, exists, !exists) -> predicate over labels."""
    reqs: list[Callable[[dict], bool]] = []
    parts = re.findall(r"(?:[^,(]|\([^)]*\))+", text or "")
    for part in parts:
        if not part.strip():
            continue
        m = _REQ.fullmatch(part)
        if not m:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
        neg, key, op, val, setop, vals = m.groups()
        if op in ("=", "=="):
            reqs.append(lambda l, k=key, v=val: l.get(k) == v)
        elif op == "!=":
            reqs.append(lambda l, k=key, v=val: l.get(k) != v)
        elif setop:
            values = {v.strip() for v in vals.split(",") if v.strip()}
            if setop == "in":
                reqs.append(lambda l, k=key, vs=values: l.get(k) in vs)
            else:
                reqs.append(lambda l, k=key, vs=values: l.get(k) not in vs)
        elif neg:
            reqs.append(lambda l, k=key: k not in l)
        else:
            reqs.append(lambda l, k=key: k in l)
    return lambda labels: all(r(labels or {}) for r in reqs)


def selector_string(match_labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


# ------------------------------------------------------------------------------- the store

def _intstr(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        x = total * int(value[:-1]) / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(value or 0)


def _strip_hash(template: dict) -> dict:
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return t


def template_hash(template: dict) -> str:
    raw = json.dumps(_strip_hash(template), sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:10]


@dataclass
class _Fault:
    method: str
    path: re.Pattern
    status: int
    remaining: int


@dataclass
class _Slow:
    method: str
    path: re.Pattern
    seconds: float
    remaining: int


@dataclass
class FakeKube:
    """The fake cluster state and controller. `serve()` starts the HTTP server in a thread."""

    ready_after: float = 0.05          # seconds from pod creation to Ready
    observe_delay: float = 0.02        # controller lag behind a spec change (observedGeneration)
    deadline_after: float = 0.3        # for behaviour "deadline"
    default_behavior: str = "ready"
    tick: float = 0.025                # controller resync period while serving
    behavior: dict[str, str] = field(default_factory=dict)        # deployment name -> behaviour
    image_behavior: dict[str, str] = field(default_factory=dict)  # image -> behaviour

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, ns, name) -> object
        self._rv = itertools.count(1000)
        self._faults: list[_Fault] = []
        self._slow: list[_Slow] = []
        self._write_hooks: list[Callable[[FakeKube, str, str, str], None]] = []
        self._stopped = threading.Event()
        self._changed_at: dict[str, float] = {}        # deployment uid -> time of spec change
        self._progress_at: dict[str, float] = {}       # deployment uid -> last progress time
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, content type)
        self._server = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ----- test helpers
    def inject_error(self, method: str, path_regex: str, status: int, count: int = 1) -> None:
        """Make the next `count` requests matching method and path fail with `status`."""
        with self.lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, count))

    def slow_response(self, method: str, path_regex: str, seconds: float, count: int = 1) -> None:
        """Apply the next `count` matching requests at once but answer them `seconds` late."""
        with self.lock:
            self._slow.append(_Slow(method.upper(), re.compile(path_regex), seconds, count))

    def on_write(self, hook: Callable[[FakeKube, str, str, str], None]) -> None:
        """Call `hook(fake, plural, namespace, name)` (under the lock) after each client write."""
        with self.lock:
            self._write_hooks.append(hook)

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Another actor (an autoscaler, a person with kubectl) sets a Deployment's replicas."""
        with self.lock:
            target = copy.deepcopy(self.objects[("deployments", namespace, name)])
            target["spec"]["replicas"] = replicas
            target["metadata"].pop("resourceVersion", None)
            self._write("deployments", namespace, name, target, sub=None)
            self.reconcile()

    def add_deployment(self, namespace: str, name: str, image: str, *, replicas: int = 2,
                       container: str = "app", labels: dict | None = None,
                       settle: bool = True) -> dict:
        """Create a Deployment; with settle=True its pods are created Ready at once."""
        labels = labels or {"app": name}
        body = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"name": container, "image": image}]}}},
        }
        with self.lock:
            obj = self._create("deployments", namespace, body)
            if settle:
                self._changed_at[obj["metadata"]["uid"]] = 0.0
                self.reconcile(ready_now=True)
            return copy.deepcopy(self.objects[("deployments", namespace, name)])

    def add_service(self, namespace: str, name: str, selector: dict, port: int = 80) -> dict:
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                "spec": {"selector": dict(selector), "ports": [{"port": port, "protocol": "TCP"}]}}
        with self.lock:
            return copy.deepcopy(self._create("services", namespace, body))

    def get(self, plural: str, namespace: str, name: str) -> dict:
        with self.lock:
            self.reconcile()
            return copy.deepcopy(self.objects[(plural, namespace, name)])

    def list(self, plural: str, namespace: str, selector: str = "") -> list[dict]:
        with self.lock:
            self.reconcile()
            pred = parse_selector(selector)
            return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.objects.items())
                    if p == plural and ns == namespace and pred(o["metadata"].get("labels", {}))]

    # ----- server
    def serve(self, port: int = 0, ssl_context: tuple[str, str] | None = None) -> FakeKube:
        """Serve on 127.0.0.1; with `ssl_context` (certificate file, key file) over HTTPS."""
        self._server = make_server("127.0.0.1", port, self.wsgi, threaded=True, request_handler=_QuietHandler,
                                   ssl_context=ssl_context)
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_port}"
        # a short poll interval: shutdown() waits for it, and tests start and stop many servers
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()
        # the controllers also run on a clock, like the real ones, not only on requests
        self._ticker = threading.Thread(target=self._tick_loop, daemon=True)
        self._ticker.start()
        return self

    def _tick_loop(self) -> None:
        while self._server is not None:
            self.reconcile()
            time.sleep(self.tick)

    def stop(self) -> None:
        self._stopped.set()  # slow answers still waiting give up
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ----- object bookkeeping
    def _next_rv(self) -> str:
        return str(next(self._rv))

    def _create(self, plural: str, ns: str, body: dict) -> dict:
        meta = body.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{_KINDS[plural][1]}.{_KINDS[plural][2]} is invalid: "
                           "metadata.name: Required value")
        if (plural, ns, name) in self.objects:
            raise ApiError(409, "AlreadyExists", f'{plural}.{_group(plural)} "{name}" already exists',
                           {"name": name, "kind": plural})
        body["apiVersion"], body["kind"] = _KINDS[plural][2], _KINDS[plural][1]
        meta.update(uid=str(uuid.uuid4()), resourceVersion=self._next_rv(),
                    creationTimestamp=now_rfc3339())
        if ns:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        _fold_string_data(plural, body)
        meta.pop("generation", None)
        if plural in ("deployments", "replicasets"):
            meta["generation"] = 1
            self._default_workload(plural, body)
        if plural == "deployments":
            self._changed_at[meta["uid"]] = time.time()
            self._progress_at[meta["uid"]] = time.time()
        if plural == "services":
            spec = body.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            n = len(self.objects)
            spec.setdefault("clusterIP", f"10.96.{n % 250}.{(n * 7) % 250 + 1}")
        if plural not in ("configmaps", "secrets", "clusterroles"):  # kinds without status
            body.setdefault("status", {})
        self.objects[(plural, ns, name)] = body
        return body

    def _default_workload(self, plural: str, body: dict) -> None:
        spec = body.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        if plural == "deployments":
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                strategy["type"] = "RollingUpdate"
                ru = strategy.setdefault("rollingUpdate", {})
                ru.setdefault("maxSurge", "25%")
                ru.setdefault("maxUnavailable", "25%")
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        self._validate_workload(plural, body)

    def _validate_workload(self, plural: str, body: dict) -> None:
        spec = body["spec"]
        name = body["metadata"]["name"]
        kind = _KINDS[plural][1]
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not sel:
            raise ApiError(422, "Invalid", f'{kind}.apps "{name}" is invalid: spec.selector: Required value')
        if any(labels.get(k) != v for k, v in sel.items()):
            raise ApiError(422, "Invalid", f'{kind}.apps "{name}" is invalid: spec.template.metadata.labels: '
                           "Invalid value: `selector` does not match template `labels`")
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        if not containers or any(not c.get("name") or not c.get("image") for c in containers):
            raise ApiError(422, "Invalid", f'{kind}.apps "{name}" is invalid: '
                           "spec.template.spec.containers: Required value")
        if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
            raise ApiError(422, "Invalid", f'{kind}.apps "{name}" is invalid: spec.replicas: must be >= 0')

    def _write(self, plural: str, ns: str, name: str, new: dict, *, sub: str | None) -> dict:
        """Store an updated object: optimistic concurrency, immutables, generation."""
        key = (plural, ns, name)
        old = self.objects[key]
        sent_rv = (new.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {plural}.{_group(plural)} "{name}": the object '
                           "has been modified; please apply your changes to the latest version and try again",
                           {"name": name, "kind": plural})
        if (new.get("metadata") or {}).get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        result = copy.deepcopy(old)
        if sub == "status":
            result["status"] = new.get("status") or {}
        else:
            meta = dict(new.get("metadata") or {})
            for k in ("uid", "creationTimestamp", "namespace", "generation", "resourceVersion", "name"):
                meta[k] = old["metadata"].get(k)
            meta = {k: v for k, v in meta.items() if v is not None}
            result["metadata"] = meta
            # every top-level field but identity and status comes from the new body (ConfigMap
            # and Secret carry `data`, a ClusterRole `rules`; workloads and Services `spec`)
            for k in set(old) | set(new):
                if k in ("apiVersion", "kind", "metadata", "status") or k.startswith("_"):
                    continue
                if k in new:
                    result[k] = new[k]
                else:
                    result.pop(k, None)
            if "spec" in old:
                result["spec"] = new.get("spec") or {}
            _fold_string_data(plural, result)
            if plural in ("deployments", "replicasets"):
                if result["spec"].get("selector") != old["spec"].get("selector"):
                    raise ApiError(422, "Invalid", f'{_KINDS[plural][1]}.apps "{name}" is invalid: '
                                   "spec.selector: Invalid value: field is immutable")
                self._default_workload(plural, result)
                if result["spec"] != old["spec"]:
                    result["metadata"]["generation"] = old["metadata"]["generation"] + 1
                    if plural == "deployments":
                        self._changed_at[meta["uid"]] = time.time()
                        self._progress_at[meta["uid"]] = time.time()
        if result != old:
            result["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[key] = result
        return result

    # ----- the controller
    def _behavior(self, deploy_name: str, template: dict) -> str:
        for c in (template.get("spec") or {}).get("containers") or []:
            if c.get("image") in self.image_behavior:
                return self.image_behavior[c["image"]]
        return self.behavior.get(deploy_name, self.default_behavior)

    def reconcile(self, ready_now: bool = False) -> None:
        """Run the deployment + replicaset controllers until they settle (on every request and tick)."""
        with self.lock:
            now = time.time()
            for _ in range(5):  # passes until nothing changes: the controllers "caught up" to now
                before = self._peek_rv()
                self._reconcile_pass(now, ready_now)
                if self._peek_rv() == before:
                    break

    def _peek_rv(self) -> int:
        value = next(self._rv)
        self._rv = itertools.count(value)
        return value

    def _reconcile_pass(self, now: float, ready_now: bool) -> None:
        # deployment controller (scaling), then replicaset controller (pods), then status
        for key in [k for k in self.objects if k[0] == "deployments"]:
            dep = self.objects.get(key)
            changed = self._changed_at.get(dep["metadata"]["uid"], 0) if dep is not None else now
            if dep is not None and now - changed >= self.observe_delay:
                self._reconcile_deployment(dep, now)
        for key in [k for k in self.objects if k[0] == "replicasets"]:
            self._reconcile_replicaset(self.objects[key], now, ready_now)
        for key in [k for k in self.objects if k[0] == "deployments"]:
            self._deployment_status(self.objects[key], now)

    def _owned(self, plural: str, owner: dict) -> list[dict]:
        uid = owner["metadata"]["uid"]
        ns = owner["metadata"]["namespace"]
        return [o for (p, n, _), o in self.objects.items() if p == plural and n == ns
                and any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences", []))]

    def _set(self, obj: dict, path: list[str], value: Any) -> None:
        cur = obj
        for p in path[:-1]:
            cur = cur.setdefault(p, {})
        if cur.get(path[-1]) != value:
            cur[path[-1]] = value
            obj["metadata"]["resourceVersion"] = self._next_rv()

    def _reconcile_deployment(self, dep: dict, now: float) -> None:
        meta, spec = dep["metadata"], dep["spec"]
        ns, name = meta["namespace"], meta["name"]
        desired = spec.get("replicas", 1)
        template = spec["template"]
        rss = self._owned("replicasets", dep)
        max_rev = max((int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in rss),
                      default=0)
        new = next((rs for rs in rss if _strip_hash(rs["spec"]["template"]) == _strip_hash(template)), None)
        if new is None:
            h = template_hash(template)
            rs_template = copy.deepcopy(template)
            rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
            labels = dict(rs_template["metadata"]["labels"])
            body = {"metadata": {"name": f"{name}-{h}", "labels": labels,
                                 "annotations": {REVISION: str(max_rev + 1),
                                                 "deployment.kubernetes.io/desired-replicas": str(desired)},
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                      "name": name, "uid": meta["uid"], "controller": True,
                                                      "blockOwnerDeletion": True}]},
                    "spec": {"replicas": 0,
                             "selector": {"matchLabels": {**spec["selector"]["matchLabels"], HASH_LABEL: h}},
                             "template": rs_template}}
            new = self._create("replicasets", ns, body)
            self._progress_at[meta["uid"]] = now
            self._set(dep, ["metadata", "annotations", REVISION], str(max_rev + 1))
            rss.append(new)
        elif int(new["metadata"].get("annotations", {}).get(REVISION, "0")) != max_rev:
            # rollback to an older template: that ReplicaSet becomes the newest revision
            self._set(new, ["metadata", "annotations", REVISION], str(max_rev + 1))
            self._progress_at[meta["uid"]] = now
        self._set(dep, ["metadata", "annotations", REVISION], new["metadata"]["annotations"][REVISION])
        olds = sorted((rs for rs in rss if rs is not new),
                      key=lambda rs: int(rs["metadata"].get("annotations", {}).get(REVISION, "0")))
        strategy = spec.get("strategy") or {}
        old_total = sum(rs["spec"]["replicas"] for rs in olds)
        new_avail = new.get("status", {}).get("availableReplicas", 0)
        if strategy.get("type") == "Recreate":
            old_keep = 0
            new_target = desired if all(rs.get("status", {}).get("replicas", 0) == 0 for rs in olds) else 0
        else:
            ru = strategy.get("rollingUpdate") or {}
            surge = _intstr(ru.get("maxSurge", "25%"), desired, True)
            unavail = _intstr(ru.get("maxUnavailable", "25%"), desired, False)
            if surge == 0 and unavail == 0:
                unavail = 1
            old_keep = min(old_total, max(0, desired - unavail - new_avail))
            current = min(new["spec"]["replicas"], desired)
            new_target = min(desired, max(current, desired + surge - old_keep))
        if new["spec"]["replicas"] != new_target:
            self._set(new, ["spec", "replicas"], new_target)
            self._set(new, ["metadata", "annotations", "deployment.kubernetes.io/desired-replicas"],
                      str(desired))
            self._progress_at[meta["uid"]] = now
        excess = old_total - old_keep
        for rs in olds:  # oldest revisions scale down first
            if excess <= 0:
                break
            cut = min(excess, rs["spec"]["replicas"])
            if cut:
                self._set(rs, ["spec", "replicas"], rs["spec"]["replicas"] - cut)
                excess -= cut
        # revisionHistoryLimit: drop the oldest idle ReplicaSets beyond the limit
        idle = [rs for rs in olds if rs["spec"]["replicas"] == 0 and not rs.get("status", {}).get("replicas")]
        for rs in idle[: max(0, len(idle) - spec.get("revisionHistoryLimit", 10))]:
            for pod in self._owned("pods", rs):
                self.objects.pop(("pods", ns, pod["metadata"]["name"]), None)
            self.objects.pop(("replicasets", ns, rs["metadata"]["name"]), None)
        self._set(dep, ["status", "observedGeneration"], meta["generation"])

    def _reconcile_replicaset(self, rs: dict, now: float, ready_now: bool) -> None:
        ns = rs["metadata"]["namespace"]
        owner = next((r["name"] for r in rs["metadata"].get("ownerReferences", [])
                      if r.get("kind") == "Deployment"), "")
        pods = sorted(self._owned("pods", rs), key=lambda p: p["metadata"]["creationTimestamp"])
        want = rs["spec"]["replicas"]
        behavior = self._behavior(owner, rs["spec"]["template"])
        while len(pods) < want:
            pname = f"{rs['metadata']['name']}-{uuid.uuid4().hex[:5]}"
            tmpl = rs["spec"]["template"]
            pod = {"metadata": {"name": pname, "labels": dict(tmpl["metadata"].get("labels", {})),
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                     "name": rs["metadata"]["name"],
                                                     "uid": rs["metadata"]["uid"], "controller": True}]},
                   "spec": copy.deepcopy(tmpl.get("spec", {})),
                   "status": {"phase": "Pending"}}
            pod = self._create("pods", ns, pod)
            pod["_created"] = now - (self.ready_after if ready_now else 0)
            pods.append(pod)
        # scale down: not-ready pods first, then the newest
        while len(pods) > want:
            victim = next((p for p in reversed(pods) if not _pod_ready(p)), pods[-1])
            pods.remove(victim)
            self.objects.pop(("pods", ns, victim["metadata"]["name"]), None)
        for pod in pods:
            ready = behavior == "ready" and now - pod.get("_created", now) >= self.ready_after
            status = {"phase": "Running" if ready or behavior == "ready" else "Pending",
                      "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                      "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "",
                                             "ready": ready, "restartCount": 0}
                                            for c in pod["spec"].get("containers", [])]}
            if pod["status"] != status:
                pod["status"] = status
                pod["metadata"]["resourceVersion"] = self._next_rv()
        ready = sum(1 for p in pods if _pod_ready(p))
        status = {k: v for k, v in {"replicas": len(pods), "fullyLabeledReplicas": len(pods),
                                    "readyReplicas": ready, "availableReplicas": ready,
                                    "observedGeneration": rs["metadata"].get("generation", 1)}.items()
                  if v or k == "replicas"}  # ReplicaSetStatus.replicas is required, the rest omitempty
        if rs.get("status") != status:
            rs["status"] = status
            rs["metadata"]["resourceVersion"] = self._next_rv()

    def _deployment_status(self, dep: dict, now: float) -> None:
        meta, spec = dep["metadata"], dep["spec"]
        rss = self._owned("replicasets", dep)
        rev = meta.get("annotations", {}).get(REVISION)
        new = next((rs for rs in rss if rs["metadata"].get("annotations", {}).get(REVISION) == rev), None)
        desired = spec.get("replicas", 1)
        total = sum(rs.get("status", {}).get("replicas", 0) for rs in rss)
        ready = sum(rs.get("status", {}).get("readyReplicas", 0) for rs in rss)
        updated = new.get("status", {}).get("replicas", 0) if new else 0
        new_avail = new.get("status", {}).get("availableReplicas", 0) if new else 0
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        unavail = _intstr(ru.get("maxUnavailable", "25%"), desired, False)
        old = dep.get("status", {})
        prev_ready = old.get("readyReplicas", 0)
        if ready > prev_ready:
            self._progress_at[meta["uid"]] = now
        complete = updated == desired and total == desired and new_avail == desired
        deadline = (self.deadline_after if self._behavior(meta["name"], spec["template"]) == "deadline"
                    else spec.get("progressDeadlineSeconds", 600))
        ts = now_rfc3339(now)
        rs_name = new["metadata"]["name"] if new else meta["name"]
        prev = {c["type"]: c for c in old.get("conditions", [])}
        if complete:
            progressing = ("True", "NewReplicaSetAvailable",
                           f'ReplicaSet "{rs_name}" has successfully progressed.')
        elif now - self._progress_at.get(meta["uid"], now) > deadline:
            progressing = ("False", "ProgressDeadlineExceeded",
                           f'ReplicaSet "{rs_name}" has timed out progressing.')
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        available_ok = ready >= desired - unavail
        if available_ok:
            available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            available = ("False", "MinimumReplicasUnavailable",
                         "Deployment does not have minimum availability.")

        def cond(kind: str, value: tuple[str, str, str]) -> dict:
            p = prev.get(kind)
            same = p and (p["status"], p["reason"], p["message"]) == value
            return {"type": kind, "status": value[0], "reason": value[1], "message": value[2],
                    "lastUpdateTime": p["lastUpdateTime"] if same else ts,
                    "lastTransitionTime": p["lastTransitionTime"] if p and p["status"] == value[0] else ts}

        status = {"observedGeneration": old.get("observedGeneration"), "replicas": total,
                  "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready,
                  "unavailableReplicas": max(0, desired - ready),
                  "conditions": [cond("Available", available), cond("Progressing", progressing)]}
        status = {k: v for k, v in status.items() if v}  # the API server omits zero values
        if status != old:
            dep["status"] = status
            meta["resourceVersion"] = self._next_rv()

    # ----- HTTP
    def wsgi(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        try:
            response = self._handle(request)
        except ApiError as e:
            response = Response(json.dumps(e.status()), status=e.code, content_type="application/json")
        delay = environ.get("fake_kube.delay")
        if delay:
            self._stopped.wait(delay)  # outside the lock: the rest of the cluster goes on
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        method, path = request.method, request.path
        ctype = request.headers.get("Content-Type")
        with self.lock:
            self.requests.append((method, path, ctype))
            for slow in self._slow:
                if slow.remaining > 0 and slow.method in (method, "*") and slow.path.search(path):
                    slow.remaining -= 1
                    request.environ["fake_kube.delay"] = slow.seconds
                    break
            for fault in self._faults:
                if fault.remaining > 0 and fault.method in (method, "*") and fault.path.search(path):
                    fault.remaining -= 1
                    reason = {404: "NotFound", 409: "Conflict", 500: "InternalError", 403: "Forbidden",
                              429: "TooManyRequests", 503: "ServiceUnavailable"}.get(fault.status, "Unknown")
                    raise ApiError(fault.status, reason, f"injected {fault.status} for {method} {path}")
            m = _PATH.match(path)
            if not m or m["kind"] not in _KINDS or not path.startswith(_KINDS[m["kind"]][0] + "/") \
                    or (m["ns"] is None) != (m["kind"] in CLUSTER_SCOPED):
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
            if request.args.get("watch") in ("true", "1"):
                raise ApiError(400, "BadRequest", "watch is not supported by the fake")
            self.reconcile()
            plural, ns, name, sub = m["kind"], m["ns"] or "", m["name"], m["sub"]
            if sub and plural != "deployments":
                raise ApiError(404, "NotFound", f"subresource {sub} not served for {plural}")
            manager = request.args.get("fieldManager") or \
                (request.headers.get("User-Agent") or "unknown").split("/")[0]
            if method == "PATCH" and ctype == APPLY_PATCH:
                if name is None or sub:
                    raise ApiError(405, "MethodNotAllowed", "apply is served on objects only")
                return self._apply_request(request, plural, ns, name)
            body = self._body(request) if method in ("POST", "PUT", "PATCH") else None
            if name is None:
                if method == "GET":
                    items = self._public_list(plural, ns, request.args.get("labelSelector", ""))
                    return _json({"kind": f"{_KINDS[plural][1]}List", "apiVersion": _KINDS[plural][2],
                                  "metadata": {"resourceVersion": str(next(self._rv))}, "items": items})
                if method == "POST":
                    if plural in ("replicasets", "pods"):
                        raise ApiError(405, "MethodNotAllowed",
                                       f"the fake creates {plural} only via its controller")
                    obj = self._create(plural, ns, body)
                    self._track_update((plural, ns, obj["metadata"]["name"]), None, manager)
                    self.reconcile()
                    self._written(plural, ns, obj["metadata"]["name"])
                    return _json(_public(self.objects[(plural, ns, obj["metadata"]["name"])]), 201)
                raise ApiError(405, "MethodNotAllowed", f"{method} not allowed on a collection")
            key = (plural, ns, name)
            if key not in self.objects:
                raise ApiError(404, "NotFound", f'{plural}.{_group(plural)} "{name}" not found',
                               {"name": name, "group": _group(plural), "kind": plural})
            current = self.objects[key]
            if method == "DELETE":
                del self.objects[key]
                for rs in self._owned("replicasets", current) if plural == "deployments" else []:
                    for pod in self._owned("pods", rs):
                        self.objects.pop(("pods", ns, pod["metadata"]["name"]), None)
                    self.objects.pop(("replicasets", ns, rs["metadata"]["name"]), None)
                self._written(plural, ns, name)
                return _json({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
            if method == "GET":
                return _json(self._view(current, sub))
            if method not in ("PUT", "PATCH"):
                raise ApiError(405, "MethodNotAllowed", f"{method} not allowed")
            if plural in ("replicasets", "pods"):
                raise ApiError(405, "MethodNotAllowed", f"the fake does not accept writes to {plural}")
            view = self._view(current, sub)
            if method == "PUT":
                new = body
            elif ctype == SMP:
                new = strategic_merge(view, body)
            elif ctype == MERGE_PATCH:
                new = merge_patch(view, body)
            elif ctype == JSON_PATCH:
                new = json_patch(view, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown "
                               f"format - accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, "
                               f"{SMP}, {APPLY_PATCH}")
            if not isinstance(new, dict):
                raise ApiError(400, "BadRequest", "the request body must be an object")
            before = copy.deepcopy(current)
            if sub == "scale":
                replicas = (new.get("spec") or {}).get("replicas")
                if not isinstance(replicas, int) or replicas < 0:
                    raise ApiError(422, "Invalid",
                                   "Scale.autoscaling is invalid: spec.replicas: must be >= 0")
                target = copy.deepcopy(current)
                target["spec"]["replicas"] = replicas
                target["metadata"]["resourceVersion"] = (new.get("metadata") or {}).get("resourceVersion")
                self._write(plural, ns, name, target, sub=None)
            else:
                self._write(plural, ns, name, new, sub=sub)
            if sub != "status":
                self._track_update(key, before, manager)
            self.reconcile()
            self._written(plural, ns, name)
            return _json(self._view(self.objects[key], sub))

    def _apply_request(self, request: Request, plural: str, ns: str, name: str) -> Response:
        """Server-side apply (PATCH application/apply-patch+yaml), as the API server documents
        it: `fieldManager` is required; the object is created when missing; fields another
        manager owns with a different value are a 409 conflict unless `force=true`, which moves
        their ownership; fields this manager applied before and no longer sends are removed
        (when nobody else owns them); `dryRun=All` answers with the result and stores nothing."""
        manager = request.args.get("fieldManager")
        if not manager:
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                           "Required value: is required for apply patch")
        force = request.args.get("force") in ("true", "1")
        dry = request.args.getlist("dryRun")
        if any(d != "All" for d in dry):
            raise ApiError(400, "BadRequest", f'dryRun: Unsupported value: "{dry[0]}": supported '
                           'values: "All"')
        try:
            config = yaml.safe_load(request.get_data() or b"")
        except yaml.YAMLError:
            raise ApiError(400, "BadRequest", "error decoding YAML: the body is not valid YAML") from None
        if not isinstance(config, dict):
            raise ApiError(400, "BadRequest", "the apply patch must be an object")
        _, kind, api_version = _KINDS[plural]
        if config.get("apiVersion") != api_version or config.get("kind") != kind:
            raise ApiError(400, "BadRequest", f"the API version in the data ({config.get('apiVersion')}) "
                           f"and kind ({config.get('kind')}) do not match the request "
                           f"({api_version}, {kind})")
        meta: dict = config["metadata"] if isinstance(config.get("metadata"), dict) else {}
        if meta.get("name") != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')}) does not "
                           f"match the name on the URL ({name})")
        if ns and meta.get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match "
                           "the namespace sent on the request")
        config = {k: v for k, v in config.items() if k != "status"}  # status is its own subresource
        mine = field_paths(config)
        key = (plural, ns, name)
        saved = (copy.deepcopy(self.objects.get(key)), dict(self._changed_at), dict(self._progress_at))
        live = self.objects.get(key)
        if live is None:
            body = copy.deepcopy(config)
            body.setdefault("metadata", {}).pop("resourceVersion", None)
            obj = self._create(plural, ns, body)
            obj["metadata"]["managedFields"] = [_entry(manager, "Apply", api_version, mine)]
            code = 201
        else:
            managed = list(live["metadata"].get("managedFields") or [])
            conflicts: list[tuple[str, FieldPath]] = []
            others: set[FieldPath] = set()
            before_mine: set[FieldPath] = set()
            for entry in managed:
                theirs = paths_of(entry.get("fieldsV1") or {})
                if entry.get("manager") == manager and entry.get("operation") == "Apply":
                    before_mine = theirs
                    continue
                others |= theirs
                if entry.get("manager") == manager:
                    continue
                for path in sorted(theirs & mine):
                    if path[-1] != "." and field_value(live, path) != field_value(config, path):
                        conflicts.append((str(entry.get("manager")), path))
            if conflicts and not force:
                text = "; ".join(f'conflict with "{who}": {_dotted(path)}' for who, path in conflicts)
                raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict"
                               f"{'s' if len(conflicts) > 1 else ''}: {text}",
                               {"causes": [{"reason": "FieldManagerConflict", "field": _dotted(path),
                                            "message": f'conflict with "{who}"'}
                                           for who, path in conflicts]})
            merged = _public(live)
            # deepest first: an item's fields go before the item itself
            for path in sorted(before_mine - mine - others, key=len, reverse=True):
                _remove_path(merged, path)
            merged = _apply_merge(merged, config)
            merged["metadata"]["resourceVersion"] = meta.get("resourceVersion") or \
                live["metadata"]["resourceVersion"]
            taken = {p for _, p in conflicts}
            new_managed = []
            for entry in managed:
                if entry.get("manager") == manager and entry.get("operation") == "Apply":
                    continue
                left = paths_of(entry.get("fieldsV1") or {}) - taken
                if left:
                    new_managed.append({**entry, "fieldsV1": fields_v1(left)})
            new_managed.append(_entry(manager, "Apply", api_version, mine))
            merged["metadata"]["managedFields"] = live["metadata"].get("managedFields")
            obj = self._write(plural, ns, name, merged, sub=None)
            if _managed_sans_time(new_managed) != _managed_sans_time(managed):
                obj["metadata"]["managedFields"] = new_managed
                if obj["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]:
                    obj["metadata"]["resourceVersion"] = self._next_rv()
            code = 200
        answer = _public(self.objects[key])
        if dry:
            prior, self._changed_at, self._progress_at = saved
            if prior is None:
                del self.objects[key]
            else:
                self.objects[key] = prior
            return _json(answer, code)
        self.reconcile()
        self._written(plural, ns, name)
        return _json(_public(self.objects[key]), code)

    def _track_update(self, key: tuple[str, str, str], before: dict | None, manager: str) -> None:
        """A create, update or non-apply patch: the fields it changed now belong to `manager`
        (operation Update), and to nobody else; fields it removed belong to nobody."""
        after = self.objects.get(key)
        if after is None:
            return
        new_paths = field_paths(after)
        old_paths = field_paths(before) if before is not None else set()
        changed = {p for p in new_paths if before is None or (
            p[-1] != "." and field_value(before, p) != field_value(after, p))}
        changed |= new_paths - old_paths
        gone = old_paths - new_paths
        managed = list(((before or {}).get("metadata") or {}).get("managedFields") or [])
        out, found = [], False
        for entry in managed:
            paths = paths_of(entry.get("fieldsV1") or {}) - changed - gone
            if entry.get("manager") == manager and entry.get("operation") == "Update":
                paths |= changed
                found = True
                entry = {**entry, "time": now_rfc3339()} if changed else entry
            if paths:
                out.append({**entry, "fieldsV1": fields_v1(paths)})
        if not found and changed:
            out.append(_entry(manager, "Update", _KINDS[key[0]][2], changed))
        if out:
            after["metadata"]["managedFields"] = out
        else:
            after["metadata"].pop("managedFields", None)

    def _written(self, plural: str, ns: str, name: str) -> None:
        for hook in list(self._write_hooks):
            hook(self, plural, ns, name)

    def _body(self, request: Request) -> Any:
        try:
            return json.loads(request.get_data() or b"null")
        except ValueError:
            raise ApiError(400, "BadRequest", "the request body is not valid JSON") from None

    def _public_list(self, plural: str, ns: str, selector: str) -> list[dict]:
        pred = parse_selector(selector)
        return [_public(o) for (p, n, _), o in sorted(self.objects.items())
                if p == plural and n == ns and pred(o["metadata"].get("labels", {}))]

    def _view(self, obj: dict, sub: str | None) -> dict:
        if sub == "scale":
            meta = obj["metadata"]
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                      "creationTimestamp")},
                    "spec": {"replicas": obj["spec"].get("replicas", 1)},
                    "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                               "selector": selector_string(obj["spec"]["selector"]["matchLabels"])}}
        return _public(obj)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # tests read fake.requests instead
        pass


def _group(plural: str) -> str:
    prefix = _KINDS[plural][0]
    return prefix.split("/")[2] if prefix.startswith("/apis/") else ""


def _fold_string_data(plural: str, body: dict) -> None:
    """A Secret's write-only `stringData` is merged into `data` (base64) and never stored."""
    if plural == "secrets" and isinstance(body.get("stringData"), dict):
        data = dict(body.get("data") or {})
        for k, v in body.pop("stringData").items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        body["data"] = data


def _managed_sans_time(managed: list) -> list:
    return [{k: v for k, v in e.items() if k != "time"} for e in managed]


def _public(obj: dict) -> dict:
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


def _pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions", []))


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")


# -------------------------------------------------------------- health + Prometheus fakes

class FakeHTTP:
    """Health endpoints and Prometheus `GET /api/v1/query`, answered as the test says.

    `set_status(path, code)` or `set_status(path, [500, 200, ...])` (a sequence is consumed, the
    last one sticks); `set_metric(substring, value)` answers any query containing `substring`
    with one sample `value` (None: an empty vector, i.e. no data)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[str, list[int]] = {}
        self.metrics: list[tuple[str, float | None]] = []
        self.hits: list[str] = []
        self.queries: list[str] = []
        self._server = None
        self.url = ""

    def set_status(self, path: str, status: int | list[int]) -> None:
        with self.lock:
            self.statuses[path] = list(status) if isinstance(status, list) else [status]

    def set_metric(self, substring: str, value: float | None) -> None:
        with self.lock:
            self.metrics = [(s, v) for s, v in self.metrics if s != substring] + [(substring, value)]

    def wsgi(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        with self.lock:
            if request.path == "/api/v1/query":
                query = request.args.get("query", "")
                self.queries.append(query)
                matches = [v for s, v in self.metrics if s in query]
                value = matches[-1] if matches else None
                result = [] if value is None else [{"metric": {}, "value": [time.time(), repr(float(value))]}]
                body = {"status": "success", "data": {"resultType": "vector", "result": result}}
                response = _json(body)
            else:
                self.hits.append(request.path)
                seq = self.statuses.get(request.path, [404])
                code = seq.pop(0) if len(seq) > 1 else seq[0]
                response = Response("ok" if code < 400 else "unhealthy", status=code)
        return response(environ, start_response)

    def serve(self) -> FakeHTTP:
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Kubernetes API server (apps/v1, core/v1)")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--ready-after", type=float, default=1.0)
    parser.add_argument("--demo", action="store_true", help="seed namespace default with a Deployment 'app'")
    args = parser.parse_args(argv)
    fake = FakeKube(ready_after=args.ready_after)
    if args.demo:
        fake.add_deployment("default", "app", "registry/app:v1", replicas=2)
        fake.add_service("default", "app", {"app": "app"})
    fake.serve(args.port)
    print(f"fake kube-apiserver on {fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
