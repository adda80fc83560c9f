"""Reading manifests: hostile YAML, bad shapes, policy, templating, bounds, kustomize."""

from __future__ import annotations

import shutil

import pytest

from tasks.config.environments import Manifests
from tasks.infra.manifests import (
    MAX_NODE_UNITS,
    ManifestError,
    Source,
    fetch,
    kustomize,
    load_documents,
    render,
)
from tests.support.recording_gitlab import RecordingGitLab

CFG = Manifests(path="k8s")
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {image: 'web:{sha}', json: '{\"a\": 1}'}\n"


def problems(text: str, cfg: Manifests = CFG) -> list[str]:
    with pytest.raises(ManifestError) as exc:
        render([Source("k8s/a.yaml", text)], cfg, env="staging", namespace="shop", sha="f" * 40,
               ref="main")
    return exc.value.problems


def test_placeholders_are_filled_after_parsing_and_other_braces_stay():
    out = render([Source("k8s/a.yaml", CM)], CFG, env="staging", namespace="shop",
                 sha="ab" * 20, ref="main")
    [obj] = [p.obj for p in out.objects]
    assert obj["data"] == {"image": "web:" + "ab" * 20, "json": '{"a": 1}'}
    assert obj["metadata"] == {"name": "c", "namespace": "shop",
                               "labels": {"devops-agent.io/environment": "staging"}}


def test_a_ref_cannot_change_the_yaml_structure():
    out = render([Source("k8s/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
                                       "data: {ref: '{ref}'}\n")], CFG, env="e", namespace="shop",
                 sha="f" * 40, ref="x\nkind: Secret")
    assert out.objects[0].obj["kind"] == "ConfigMap"
    assert out.objects[0].obj["data"]["ref"] == "x\nkind: Secret"


def test_billion_laughs_is_refused_before_it_is_walked():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for n in range(1, 9):
        prev = "a" if n == 1 else f"l{n - 1}"
        bomb += f"l{n}: &l{n} [{', '.join(['*' + prev] * 10)}]\n"
    [found] = problems(bomb)
    assert "k8s/a.yaml` document 1 expands to more than" in found and str(MAX_NODE_UNITS) in found


def test_recursive_aliases_and_deep_nesting_are_refused():
    assert "nests deeper than" in problems("a: " + "[" * 80 + "]" * 80 + "\n")[0]
    with pytest.raises(ManifestError) as exc:
        load_documents("&a [*a]\n", "k8s/r.yaml")
    assert "recursive alias" in exc.value.problems[0]


@pytest.mark.parametrize("text, expect", [
    ("- a\n- b\n", "document 1` is a list, not a mapping"),
    ("just text\n", "document 1` is a str, not a mapping"),
    ("kind: ConfigMap\nmetadata: {name: c}\n", "has no `apiVersion`"),
    ("apiVersion: v1\nmetadata: {name: c}\n", "has no `kind`"),
    ("apiVersion: v1\nkind: ConfigMap\n", "(ConfigMap) has no `metadata`"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {}}\n", "has no `metadata.name`"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n", "not a valid Kubernetes name"),
    ("apiVersion: v1\nkind: List\nitems: []\n", "write one object per document"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: [a]}\n", "labels must be a mapping"),
    ("a: [unclosed\n", "k8s/a.yaml` is not valid YAML (line"),
    ("a: !!binary aGVsbG8=\n", "!!binary"),
    ("a: !!python/object:os.system [ls]\n", "is not valid YAML"),
])
def test_malformed_documents_are_refused_naming_file_and_document(text, expect):
    found = problems(text)
    assert any(expect in p for p in found), found


@pytest.mark.parametrize("text, expect", [
    ("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", "Namespace is cluster-scoped"),
    ("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: x}\n",
     "CustomResourceDefinition is cluster-scoped"),
    ("apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: x}\n", "cluster-scoped"),
    ("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata: {a: YQ==}\n", "inline `data`"),
    ("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {a: b}\n", "inline `data`"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: other}\n",
     "namespace `other` is outside this environment"),
    ("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n",
     "not in this environment's allowed kinds"),
])
def test_policy_refusals(text, expect):
    found = problems(text)
    assert any(expect in p for p in found), found


def test_allow_list_and_custom_kinds():
    cfg = Manifests(path="k8s", allowed_kinds=("ConfigMap", "Widget"),
                    custom_kinds=({"api_version": "example.com/v1", "kind": "Widget",
                                   "plural": "widgets"},))
    out = render([Source("k8s/a.yaml", "apiVersion: example.com/v1\nkind: Widget\n"
                                       "metadata: {name: w}\n---\n" + CM)],
                 cfg, env="e", namespace="shop", sha="f" * 40, ref="main")
    assert [p.key for p in out.objects] == ["Widget/w", "ConfigMap/c"]
    assert out.objects[0].kind.plural == "widgets"
    assert any("Service" in p and "allowed kinds (ConfigMap, Widget)" in p for p in problems(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", cfg))


def test_duplicates_and_too_many_objects():
    assert "is also defined in `k8s/a.yaml, document 1`" in problems(CM + "---\n" + CM)[0]
    many = "---\n".join(CM.replace("name: c", f"name: c{i}") for i in range(4))
    assert "more than 3 objects" in problems(many, Manifests(path="k8s", max_objects=3))[-1]


def _repo(files: dict[str, str]) -> RecordingGitLab:
    gl = RecordingGitLab()
    gl.add_project("acme/shop", id=5, files=files)
    return gl


def test_fetch_reads_only_yaml_files_under_the_folder_at_the_sha():
    gl = _repo({"k8s/a.yaml": CM, "k8s/sub/b.yml": CM, "k8s/notes.md": "x", "other/c.yaml": CM})
    sha = gl.resolve_ref(5, "main")
    got = fetch(gl, 5, sha, CFG)
    assert [s.path for s in got] == ["k8s/a.yaml", "k8s/sub/b.yml"]


def test_fetch_bounds_files_and_sizes():
    gl = _repo({f"k8s/{i}.yaml": CM for i in range(4)})
    sha = gl.resolve_ref(5, "main")
    with pytest.raises(ManifestError, match="more than 3 files"):
        fetch(gl, 5, sha, Manifests(path="k8s", max_files=3))
    with pytest.raises(ManifestError, match="larger than 10 bytes"):
        fetch(gl, 5, sha, Manifests(path="k8s", max_file_bytes=10))
    with pytest.raises(ManifestError, match="exceed 300 bytes together"):
        fetch(gl, 5, sha, Manifests(path="k8s", max_total_bytes=300))
    with pytest.raises(ManifestError, match="`nope` does not exist"):
        fetch(gl, 5, sha, Manifests(path="nope"))


def test_kustomize_without_kubectl_is_refused_with_the_reason():
    with pytest.raises(ManifestError, match="`kubectl` is not on the worker's PATH"):
        kustomize([Source("k8s/kustomization.yaml", "resources: [a.yaml]\n")],
                  Manifests(path="k8s", kustomize=True), which=lambda name: None)


def test_kustomize_refuses_remote_resources_and_helm():
    cfg = Manifests(path="k8s", kustomize=True)
    with pytest.raises(ManifestError, match="is remote"):
        kustomize([Source("k8s/kustomization.yaml",
                          "resources:\n- https://github.com/x/y//base?ref=v1\n")], cfg,
                  which=lambda name: "/bin/false")
    with pytest.raises(ManifestError, match="helmCharts"):
        kustomize([Source("k8s/kustomization.yaml", "helmCharts: [{name: x}]\n")], cfg,
                  which=lambda name: "/bin/false")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_with_kubectl():
    cfg = Manifests(path="k8s", kustomize=True)
    out = kustomize([Source("k8s/kustomization.yaml", "resources: [cm.yaml]\nnamePrefix: p-\n"),
                     Source("k8s/cm.yaml", CM)], cfg)
    objs = render([out], cfg, env="e", namespace="shop", sha="f" * 40, ref="main").objects
    assert [p.key for p in objs] == ["ConfigMap/p-c"]
    with pytest.raises(ManifestError, match="kubectl kustomize k8s` failed"):
        kustomize([Source("k8s/kustomization.yaml", "resources: [missing.yaml]\n")], cfg)
