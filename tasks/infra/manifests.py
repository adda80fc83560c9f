"""Reading an environment's manifests at one SHA: files through the repository API, YAML read
safely, objects checked one by one, the same `{sha}`/`{tag}` placeholders as deploy images.

Everything here treats the repository as untrusted input: the number and size of files, the
expanded size of every YAML document (anchors and aliases are counted as they would expand, so
a "billion laughs" document is refused before anything walks it), nesting depth, and every
object's shape are bounded or checked, and each refusal names the file and document.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from tasks.config.environments import Manifests
from tasks.gitlab.client import FileTooLarge, NotFound
from tasks.infra.documents import (  # noqa: F401
    MAX_DEPTH,
    MAX_DOCUMENTS_PER_FILE,
    MAX_NODE_UNITS,
    ManifestError,
    _budget,
    _key,
    _plain,
    load_documents,
)
from tasks.infra.policy import Kind, allowed, check

MAX_PROBLEMS = 20
KUSTOMIZE_TIMEOUT = 30.0
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PLACEHOLDER = re.compile(r"\{(sha|short_sha|ref|tag)\}")
_KUSTOMIZATION = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class RepoPort(Protocol):
    def repository_tree(self, project: int, path: str, ref: str, *, limit: int) -> list[dict]: ...

    def file_raw(self, project: int, path: str, ref: str, *, max_bytes: int) -> bytes: ...


@dataclass(frozen=True)
class Source:
    path: str
    text: str


@dataclass(frozen=True)
class Planned:
    """One object as it will be applied, and where it came from."""

    where: str  # "deploy/k8s/staging/app.yaml, document 2"
    kind: Kind
    obj: dict

    @property
    def key(self) -> str:
        return f"{self.kind.kind}/{self.obj['metadata']['name']}"


@dataclass
class Rendered:
    objects: list[Planned] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return hashlib.sha256(orjson.dumps([p.obj for p in self.objects],
                                           option=orjson.OPT_SORT_KEYS)).hexdigest()


# --------------------------------------------------------------------------------- fetching

def fetch(repo: RepoPort, project: int, sha: str, cfg: Manifests) -> list[Source]:
    """The files under `cfg.path` at `sha`: *.yaml/*.yml documents, or (kustomize) every file."""
    try:
        entries = repo.repository_tree(project, cfg.path, sha, limit=cfg.max_files * 4 + 1)
    except NotFound:
        raise ManifestError([f"`{cfg.path}` does not exist at {sha[:8]}"]) from None
    prefix = cfg.path + "/"
    blobs = sorted(str(e.get("path")) for e in entries if e.get("type") == "blob")
    for path in blobs:
        # the answer is checked too: nothing outside the folder is ever read
        if not path.startswith(prefix) or ".." in path.split("/"):
            raise ManifestError([f"the repository listed `{path[:200]}` under `{cfg.path}`"])
    if not cfg.kustomize:
        blobs = [b for b in blobs if b.endswith((".yaml", ".yml"))]
    if not blobs:
        raise ManifestError([f"`{cfg.path}` holds no {'files' if cfg.kustomize else '*.yaml/*.yml files'}"
                             f" at {sha[:8]}"])
    if len(blobs) > cfg.max_files or len(entries) > cfg.max_files * 4:
        raise ManifestError([f"`{cfg.path}` holds more than {cfg.max_files} files; split the "
                             "environment or raise `manifests.max_files`"])
    out, total = [], 0
    for path in blobs:
        try:
            data = repo.file_raw(project, path, sha, max_bytes=cfg.max_file_bytes)
        except FileTooLarge:
            raise ManifestError([f"`{path}` is larger than {cfg.max_file_bytes} bytes "
                                 "(`manifests.max_file_bytes`)"]) from None
        total += len(data)
        if total > cfg.max_total_bytes:
            raise ManifestError([f"the files under `{cfg.path}` exceed {cfg.max_total_bytes} "
                                 "bytes together (`manifests.max_total_bytes`)"])
        try:
            out.append(Source(path, data.decode("utf-8")))
        except UnicodeDecodeError:
            raise ManifestError([f"`{path}` is not UTF-8 text"]) from None
    return out


# -------------------------------------------------------------------------------- kustomize

def kustomize(sources: list[Source], cfg: Manifests,
              which: Callable[[str], str | None] = shutil.which) -> Source:
    """`kubectl kustomize` over the files, written to a private temporary folder. Remote
    resources and Helm charts are refused: a render reads only what the plan's SHA holds."""
    kubectl = which("kubectl")
    if not kubectl:
        raise ManifestError(["`manifests.kustomize` is set but `kubectl` is not on the worker's "
                             "PATH, so the kustomization cannot be rendered; install kubectl "
                             "in the worker image or list plain YAML files instead"])
    root = cfg.path + "/"
    if not any(s.path == root + name for s in sources for name in _KUSTOMIZATION):
        raise ManifestError([f"`{cfg.path}` has no kustomization.yaml"])
    for s in sources:
        if s.path.rsplit("/", 1)[-1] in _KUSTOMIZATION:
            _check_kustomization(s)
    with tempfile.TemporaryDirectory(prefix="devops-agent-kustomize-") as tmp:
        for s in sources:
            target = os.path.join(tmp, *s.path[len(root):].split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(s.text)
        try:
            done = subprocess.run([kubectl, "kustomize", tmp], capture_output=True,
                                  timeout=KUSTOMIZE_TIMEOUT, check=False, cwd=tmp,
                                  env={"PATH": os.environ.get("PATH", ""), "HOME": tmp})
        except subprocess.TimeoutExpired:
            raise ManifestError([f"`kubectl kustomize` did not finish within "
                                 f"{KUSTOMIZE_TIMEOUT:g}s"]) from None
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").replace(tmp, cfg.path).strip()
            raise ManifestError([f"`kubectl kustomize {cfg.path}` failed: {err[:500]}"])
        if len(done.stdout) > cfg.max_total_bytes * 4:
            raise ManifestError(["the rendered kustomization is larger than "
                                 f"{cfg.max_total_bytes * 4} bytes"])
        return Source(f"{cfg.path} (kustomize)", done.stdout.decode("utf-8", "replace"))


def _check_kustomization(source: Source) -> None:
    docs = load_documents(source.text, source.path)
    spec = docs[0][1] if docs else None
    if not isinstance(spec, dict):
        raise ManifestError([f"`{source.path}` is not a mapping"])
    if spec.get("helmCharts") or spec.get("helmGlobals"):
        raise ManifestError([f"`{source.path}` uses helmCharts: rendering Helm charts is not "
                             "supported (it fetches charts from outside the repository)"])
    for key in ("resources", "bases", "components"):
        for entry in spec.get(key) or []:
            text = str(entry)
            if "://" in text or text.startswith(("git@", "github.com/", "gitlab.com/")) \
                    or "?ref=" in text:
                raise ManifestError([f"`{source.path}` {key} entry `{text[:100]}` is remote: a "
                                     "plan renders only what the repository holds at its SHA"])


# ------------------------------------------------------------------------------ safe YAML









# ------------------------------------------------------------------------------ rendering

def fill(value: Any, values: dict[str, str]) -> Any:
    """{sha}, {short_sha}, {ref}, {tag} in every string, as in deploy image templates; other
    braces stay (JSON in a ConfigMap, Go templates). Filled after parsing, so a value can
    never change the YAML's structure."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], value)
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    return value


def render(sources: list[Source], cfg: Manifests, *, env: str, namespace: str, sha: str,
           ref: str) -> Rendered:
    """Every object of the sources, checked, templated, labelled and put in the namespace.
    ManifestError lists every problem found (at most MAX_PROBLEMS)."""
    kinds = allowed(cfg)
    values = {"sha": sha, "short_sha": sha[:8], "ref": ref, "tag": sha}
    problems: list[str] = []
    out = Rendered()
    seen: dict[str, str] = {}
    for source in sources:
        try:
            docs = load_documents(source.text, source.path)
        except ManifestError as exc:
            problems += exc.problems
            continue
        for n, doc in docs:
            where = f"{source.path}, document {n}"
            obj, why = _shape(doc, where)
            if obj is None:
                problems.append(str(why))
                continue
            kind, why = check(obj, namespace, kinds)
            if kind is None:
                problems.append(f"`{where}` ({obj['kind']} `{obj['metadata']['name']}`): {why}")
                continue
            obj = fill(obj, values)
            meta = obj["metadata"]
            meta["namespace"] = namespace
            meta["labels"] = {**(meta.get("labels") or {}), cfg.label: env}
            planned = Planned(where, kind, obj)
            if planned.key in seen:
                problems.append(f"`{where}`: {planned.key} is also defined in `{seen[planned.key]}`")
                continue
            seen[planned.key] = where
            out.objects.append(planned)
            if len(out.objects) > cfg.max_objects:
                raise ManifestError([*problems[:MAX_PROBLEMS],
                                     f"more than {cfg.max_objects} objects (`manifests.max_objects`)"])
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise ManifestError(problems[:MAX_PROBLEMS])
    if not out.objects:
        raise ManifestError([f"`{cfg.path}` holds no Kubernetes object"])
    return out


def _shape(doc: Any, where: str) -> tuple[dict | None, str | None]:
    if not isinstance(doc, dict):
        return None, (f"`{where}` is a {type(doc).__name__}, not a mapping: each document must "
                      "be one Kubernetes object")
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            return None, f"`{where}` has no `{key}`"
    if doc["kind"].endswith("List") and "items" in doc:
        return None, f"`{where}` is a {doc['kind'][:60]}: write one object per document instead"
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return None, f"`{where}` ({doc['kind'][:60]}) has no `metadata`"
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None, f"`{where}` ({doc['kind'][:60]}) has no `metadata.name`"
    if len(name) > 253 or not _NAME.match(name):
        return None, f"`{where}`: `{name[:80]}` is not a valid Kubernetes name"
    if "generateName" in meta:
        return None, f"`{where}`: generateName cannot be planned (the name is not known)"
    for key in ("labels", "annotations"):
        if key in meta and not isinstance(meta[key], dict):
            return None, f"`{where}`: metadata.{key} must be a mapping"
    return doc, None


def load(repo: RepoPort, project: int, sha: str, ref: str, cfg: Manifests, *, env: str,
         namespace: str) -> Rendered:
    sources = fetch(repo, project, sha, cfg)
    if cfg.kustomize:
        sources = [kustomize(sources, cfg)]
    return render(sources, cfg, env=env, namespace=namespace, sha=sha, ref=ref)
