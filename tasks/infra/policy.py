"""Which objects a plan may hold: namespaced kinds of an allow-list, in the environment's
namespace, and no Secret carrying its values in the repository."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.config.environments import Manifests


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str

    @property
    def ref(self) -> str:
        return f"{self.api_version}/{self.kind}"


# Namespaced kinds applied by default: (apiVersion, kind) -> plural.
BUILTIN: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("apps/v1", "DaemonSet"): "daemonsets",
    ("batch/v1", "Job"): "jobs",
    ("batch/v1", "CronJob"): "cronjobs",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
}

# Cluster-scoped kinds: a namespace's environment never touches them, whatever the config says.
CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "RuntimeClass", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "APIService", "Node",
    "CSIDriver", "CSINode", "VolumeAttachment", "CertificateSigningRequest", "FlowSchema",
    "PriorityLevelConfiguration",
})


def allowed(cfg: Manifests) -> dict[tuple[str, str], Kind]:
    """(apiVersion, kind) -> Kind the environment may apply."""
    kinds = {key: Kind(key[0], key[1], plural) for key, plural in BUILTIN.items()}
    for custom in cfg.custom_kinds:
        if custom.kind not in CLUSTER_SCOPED:
            kinds[(custom.api_version, custom.kind)] = Kind(custom.api_version, custom.kind,
                                                            custom.plural)
    if cfg.allowed_kinds is not None:
        names = set(cfg.allowed_kinds)
        kinds = {k: v for k, v in kinds.items() if v.kind in names or v.ref in names}
    return kinds


def check(obj: dict, namespace: str, kinds: dict[tuple[str, str], Kind]) -> tuple[Kind | None, str | None]:
    """(its Kind, None) when the object may be applied, else (None, why not)."""
    api_version, kind = str(obj.get("apiVersion")), str(obj.get("kind"))
    if kind in CLUSTER_SCOPED:
        return None, (f"{kind} is cluster-scoped: an environment applies only objects in its "
                      f"namespace `{namespace}`")
    found = kinds.get((api_version, kind))
    if found is None:
        known = ", ".join(sorted({k.kind for k in kinds.values()})) or "none"
        return None, (f"`{api_version}` {kind} is not in this environment's allowed kinds "
                      f"({known}); add it to `manifests.custom_kinds`/`allowed_kinds` if it "
                      "belongs here")
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    if ns not in (None, namespace):
        return None, (f"namespace `{str(ns)[:63]}` is outside this environment: it applies "
                      f"only to `{namespace}`")
    if kind == "Secret" and (obj.get("data") or obj.get("stringData")):
        return None, ("a Secret with inline `data`/`stringData` would put its values in the "
                      "repository and in the thread; create it out of band (or with a secrets "
                      "operator) and keep only its name here")
    return found, None
