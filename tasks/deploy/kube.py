"""The narrow Kubernetes adapter: the only module that imports the `kubernetes` client.

Everything it returns is plain JSON-shaped dicts (camelCase keys, as the API server sends them),
so the deploy code and its tests never handle the client's model classes. Errors become the typed
`KubeError` family below. The client is imported lazily, in `_kubernetes` alone: it costs 0.3 s
and the web process never needs it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)


def _kubernetes() -> Any:
    """The `kubernetes` package with its `client` and `config` modules, imported on first use.
    The only import that stays inside a function in tasks/deploy: importing the client costs
    0.3 s, and the web process (which imports this package's models) never talks to a cluster."""
    import kubernetes.client
    import kubernetes.config

    return kubernetes

_insecure_hosts: set[str] = set()
_insecure_lock = threading.Lock()


def insecure_host(host: str) -> None:
    """TLS verification is off for API server `host` (`verify_ssl: false`): say so once per
    process, and silence urllib3's InsecureRequestWarning for that host only, which it would
    otherwise emit on every single API call. Called when the configuration is loaded (the
    worker does that at start, before it forks its pool) and again when a client is built."""
    parts = urlsplit(host)
    if parts.scheme != "https":
        return  # plain HTTP has no certificate to skip
    name = parts.hostname or host
    with _insecure_lock:
        if name in _insecure_hosts:
            return
        _insecure_hosts.add(name)
    # the warning's own text names the host: other hosts keep their warnings
    warnings.filterwarnings(
        "ignore", message=rf"Unverified HTTPS request is being made to host '{re.escape(name)}'")
    log.warning("TLS certificate verification is off for the Kubernetes API server %s "
                "(verify_ssl: false); give it a CA bundle with ca_file instead", host)


class KubeError(Exception):
    """A Kubernetes API call failed. `status` is the HTTP code (0: no answer)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "", operation: str = ""):
        super().__init__(message)
        self.status, self.reason, self.operation = status, reason, operation

    @property
    def transient(self) -> bool:
        """Worth retrying later: conflicts, throttling, server errors, no answer."""
        return self.status in (0, 409, 429) or self.status >= 500

    @property
    def error_kind(self) -> str:
        return "transient" if self.transient else "permanent"


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    """409: stale resourceVersion or AlreadyExists. Re-read and retry."""


class KubeForbidden(KubeError):
    """401/403: the credentials lack a permission (RBAC)."""


class KubeInvalid(KubeError):
    """400/415/422: the request itself is wrong; retrying will not help."""


class KubeServerError(KubeError):
    """5xx or 429 from the API server."""


class KubeUnavailable(KubeError):
    """No HTTP answer at all (connection refused, timeout, TLS)."""


def _typed(status: int) -> type[KubeError]:
    if status == 404:
        return KubeNotFound
    if status == 409:
        return KubeConflict
    if status in (401, 403):
        return KubeForbidden
    if status in (400, 415, 422):
        return KubeInvalid
    if status >= 500 or status == 429:
        return KubeServerError
    return KubeError


class Kube:
    """Deployments, ReplicaSets, Pods and Services in one cluster, as dicts."""

    def __init__(self, configuration: Any, *, request_timeout: float = 10.0) -> None:
        client = _kubernetes().client
        self._client = client
        self._api_client = client.ApiClient(configuration)
        self.apps = client.AppsV1Api(self._api_client)
        self.core = client.CoreV1Api(self._api_client)
        self.request_timeout = request_timeout

    # ----- construction
    @classmethod
    def from_host(cls, host: str, *, token: str | None = None, verify_ssl: bool = True,
                  ca_cert: str | None = None, request_timeout: float = 10.0) -> Kube:
        """Talk to an explicit API server URL (tests point this at the fake)."""
        cfg = _kubernetes().client.Configuration(host=host)
        cfg.verify_ssl = verify_ssl
        if not verify_ssl:
            insecure_host(host)
        if ca_cert:
            cfg.ssl_ca_cert = ca_cert
        if token:
            cfg.api_key = {"authorization": token}
            cfg.api_key_prefix = {"authorization": "Bearer"}
        cfg.retries = 0  # one retry layer only: the deploy state machine's
        return cls(cfg, request_timeout=request_timeout)

    @classmethod
    def in_cluster(cls, *, request_timeout: float = 10.0) -> Kube:
        """The pod's service account (token + CA mounted under /var/run/secrets)."""
        client, config = _kubernetes().client, _kubernetes().config
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException as e:
            raise KubeError(f"in-cluster credentials unavailable: {e}", operation="load config") from e
        return cls(cfg, request_timeout=request_timeout)

    @classmethod
    def from_kubeconfig(cls, path: str, *, context: str | None = None,
                        request_timeout: float = 10.0) -> Kube:
        """A kubeconfig file, typically a mounted secret."""
        client, config = _kubernetes().client, _kubernetes().config
        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=path, context=context, client_configuration=cfg,
                                    persist_config=False)
        except (config.ConfigException, OSError) as e:
            raise KubeError(f"kubeconfig {path}: {e}", operation="load config") from e
        return cls(cfg, request_timeout=request_timeout)

    def close(self) -> None:
        self._api_client.close()

    # ----- plumbing
    def _call(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        exc = self._client.exceptions
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            result = fn(*args, **kwargs)
        except exc.ApiException as e:
            status = int(e.status or 0)
            reason, message = "", (e.reason or "")
            try:
                body = json.loads(e.body or "{}")
                reason, message = body.get("reason", ""), body.get("message", message)
            except (TypeError, ValueError):
                pass
            raise _typed(status)(f"{operation}: {status} {reason}: {message}".strip(),
                                 status=status, reason=reason, operation=operation) from None
        except Exception as e:  # urllib3 errors: nothing answered
            if type(e).__module__.startswith(("urllib3", "socket", "ssl")) or isinstance(e, OSError):
                raise KubeUnavailable(f"{operation}: no answer from the API server: {e}",
                                      operation=operation) from e
            raise
        return self._api_client.sanitize_for_serialization(result)

    # ----- deployments
    def get_deployment(self, namespace: str, name: str) -> dict:
        return self._call(f"get deployment {namespace}/{name}",
                          self.apps.read_namespaced_deployment, name, namespace)

    def read_deployment_status(self, namespace: str, name: str) -> dict:
        return self._call(f"read status of deployment {namespace}/{name}",
                          self.apps.read_namespaced_deployment_status, name, namespace)

    def create_deployment(self, namespace: str, body: dict) -> dict:
        name = body.get("metadata", {}).get("name", "?")
        return self._call(f"create deployment {namespace}/{name}",
                          self.apps.create_namespaced_deployment, namespace, body)

    def replace_deployment(self, namespace: str, name: str, body: dict) -> dict:
        """PUT: fails with KubeConflict when body's resourceVersion is stale."""
        return self._call(f"replace deployment {namespace}/{name}",
                          self.apps.replace_namespaced_deployment, name, namespace, body)

    def patch_deployment(self, namespace: str, name: str, patch: dict | list, *,
                         kind: str = "strategic") -> dict:
        """kind: "strategic" (dict), "json" (RFC 6902 list) or "merge" (RFC 7386 dict)."""
        return self._call(f"patch deployment {namespace}/{name}",
                          self.apps.patch_namespaced_deployment, name, namespace, patch,
                          **_patch_type(patch, kind))

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> dict:
        """Set spec.replicas through the /scale subresource; returns the Scale object."""
        return self._call(f"scale deployment {namespace}/{name} to {replicas}",
                          self.apps.patch_namespaced_deployment_scale, name, namespace,
                          {"spec": {"replicas": replicas}})

    def delete_deployment(self, namespace: str, name: str) -> None:
        self._call(f"delete deployment {namespace}/{name}",
                   self.apps.delete_namespaced_deployment, name, namespace)

    # ----- replica sets and pods
    def list_replica_sets(self, namespace: str, label_selector: str) -> list[dict]:
        result = self._call(f"list replicasets in {namespace} ({label_selector})",
                            self.apps.list_namespaced_replica_set, namespace,
                            label_selector=label_selector)
        return result.get("items") or []

    def list_pods(self, namespace: str, label_selector: str) -> list[dict]:
        result = self._call(f"list pods in {namespace} ({label_selector})",
                            self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        return result.get("items") or []

    # ----- services
    def get_service(self, namespace: str, name: str) -> dict:
        return self._call(f"get service {namespace}/{name}",
                          self.core.read_namespaced_service, name, namespace)

    def get_service_selector(self, namespace: str, name: str) -> dict[str, str]:
        return dict((self.get_service(namespace, name).get("spec") or {}).get("selector") or {})

    def set_service_selector(self, namespace: str, name: str, selector: dict[str, str], *,
                             expect: dict[str, str] | None = None) -> dict:
        """Replace spec.selector wholesale (a strategic merge would keep stale keys).

        With `expect`, a JSON-patch `test` op makes the switch a compare-and-swap: it fails
        (KubeInvalid) if someone changed the selector meanwhile."""
        ops: list[dict] = []
        if expect is not None:
            ops.append({"op": "test", "path": "/spec/selector", "value": expect})
        ops.append({"op": "replace", "path": "/spec/selector", "value": selector})
        return self._call(f"switch service {namespace}/{name} selector to {selector}",
                          self.core.patch_namespaced_service, name, namespace, ops,
                          **_patch_type(ops, "json"))


    # ----- any namespaced object, by its resource path (manifests applied from a repository)
    # These go through api_client's param_serialize/call_api rather than the typed APIs or the
    # DynamicClient: the typed APIs exist per kind (a manifest may hold any kind the policy
    # allows), and the DynamicClient discovers resources with a round of /api and /apis reads
    # on first use, whereas the policy already names every kind's plural and scope, so one
    # request per object is all a plan or an apply costs.
    def _raw(self, operation: str, method: str, path: str, *, query: list | None = None,
             body: Any = None, content_type: str | None = None) -> dict:
        api = self._api_client

        def send(_request_timeout: Any = None) -> Any:
            headers = {"Accept": "application/json"}
            if content_type:
                headers["Content-Type"] = content_type
            request = api.param_serialize(method, path, query_params=query or [],
                                          header_params=headers, body=body,
                                          auth_settings=["BearerToken"])
            response = api.call_api(*request, _request_timeout=_request_timeout)
            response.read()
            return api.response_deserialize(response, {"200": "object", "201": "object"}).data

        return self._call(operation, send)

    def get_object(self, api_version: str, plural: str, namespace: str, name: str) -> dict:
        return self._raw(f"get {plural} {namespace}/{name}", "GET",
                         resource_path(api_version, plural, namespace, name))

    def list_objects(self, api_version: str, plural: str, namespace: str,
                     label_selector: str = "", limit: int = 500) -> list[dict]:
        query: list = [("limit", limit)] + ([("labelSelector", label_selector)] if label_selector else [])
        result = self._raw(f"list {plural} in {namespace}", "GET",
                           resource_path(api_version, plural, namespace), query=query)
        return list(result.get("items") or [])

    def server_side_apply(self, obj: dict, plural: str, *, field_manager: str,
                          dry_run: bool, force: bool = False) -> dict:
        """PATCH application/apply-patch+yaml: the API server merges `obj` (the fields this
        manager has an opinion on) into the live object, or creates it, and answers with the
        result. `dry_run` (dryRun=All) runs admission and validation and stores nothing: that
        is what a plan diffs against. Without `force`, fields another manager owns with a
        different value are refused (KubeConflict) instead of taken over."""
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        query: list = [("fieldManager", field_manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        # JSON is YAML: the body is sent as JSON under the apply content type, as kubectl does
        return self._raw(f"{'dry-run ' if dry_run else ''}apply {obj.get('kind')} {ns}/{name}",
                         "PATCH", resource_path(str(obj.get("apiVersion")), plural, ns, name),
                         query=query, body=obj, content_type="application/apply-patch+yaml")


def resource_path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    """`/api/v1/namespaces/ns/configmaps/x`, `/apis/apps/v1/namespaces/ns/deployments/x`."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{quote(namespace, safe='')}/{plural}"
    return path + (f"/{quote(name, safe='')}" if name else "")


def _patch_type(patch: dict | list, kind: str) -> dict:
    if kind == "json" or isinstance(patch, list):
        return {"_content_type": "application/json-patch+json"}
    if kind == "merge":
        return {"_content_type": "application/merge-patch+json"}
    if kind == "strategic":
        return {"_content_type": "application/strategic-merge-patch+json"}
    raise ValueError(f"unknown patch kind {kind!r}")


def label_selector(match_labels: dict[str, str]) -> str:
    """matchLabels -> the `labelSelector` query string."""
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
