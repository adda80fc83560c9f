"""What a plan changes: the API server's dry-run answer against the live object, field by field.

Both sides come from the API server (the dry run includes its defaults and admission), so a
field shows as changed only when the server would really store something different. Server-set
metadata and status are left out; Secret values are never shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_SERVER_META = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp",
                "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")
# Keyed lists, compared item by item (the API's patch merge keys); others compare whole.
_LIST_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "name", "imagePullSecrets": "name"}
HIDDEN = "(hidden)"
MAX_CHANGES = 200  # per object: a plan lists more as "and N more"


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any


def normalise(obj: dict | None) -> dict | None:
    """The object without server-set metadata, status, and the revision annotation."""
    if obj is None:
        return None
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_META}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != "deployment.kubernetes.io/revision"}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


_ABSENT = object()


def changes(before: dict | None, after: dict, *, secret: bool = False) -> list[Change]:
    """Fields that differ, as dotted paths (`spec.template.spec.containers[app].image`)."""
    out: list[Change] = []
    _walk(normalise(before) or {}, normalise(after) or {}, "", out)
    if secret:
        out = [Change(c.path, HIDDEN if c.before is not None else None,
                      HIDDEN if c.after is not None else None)
               if c.path.startswith(("data", "stringData")) else c for c in out]
    return out


def _walk(a: Any, b: Any, path: str, out: list[Change]) -> None:
    if len(out) >= MAX_CHANGES:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            sub = f"{path}.{key}" if path else str(key)
            _walk(a.get(key, _ABSENT), b.get(key, _ABSENT), sub, out)
        return
    name = path.rsplit(".", 1)[-1]
    key = _LIST_KEYS.get(name)
    if key and isinstance(a, list) and isinstance(b, list) and \
            all(isinstance(i, dict) and key in i for i in [*a, *b]):
        left = {str(i[key]): i for i in a}
        right = {str(i[key]): i for i in b}
        for k in list(dict.fromkeys([*left, *right])):
            _walk(left.get(k, _ABSENT), right.get(k, _ABSENT), f"{path}[{k}]", out)
        return
    if a != b:
        out.append(Change(path, None if a is _ABSENT else a, None if b is _ABSENT else b))


def show(value: Any, limit: int = 120) -> str:
    """One value for a reply: compact JSON, cut at `limit` characters."""
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                           sort_keys=True, default=str)
    text = text.replace("`", "'").replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def applied_matches(expected: dict, live: dict) -> bool:
    """Whether `live` holds every field of `expected` (the dry-run answer, our fields only):
    how an apply whose answer was lost is confirmed by reading the object back."""
    return _contains(normalise(live) or {}, _ours(normalise(expected) or {}))


def _ours(obj: dict) -> dict:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k in ("name", "namespace",
                                                                     "labels", "annotations")}
    return {**{k: v for k, v in obj.items() if k != "metadata"}, "metadata": meta}


def _contains(live: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(live, dict) and all(k in live and _contains(live[k], v)
                                              for k, v in want.items())
    return bool(live == want)
