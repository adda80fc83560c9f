"""The import graph: no cycles between modules, and arrows that point one way between layers
and between features.

Entry points (cli, worker, wiring, webhooks) may import anything; features (ci, chatops, deploy,
incidents, infra) import the shared layer and each other without cycles; the shared layer
(gitlab, intake, engine, config, platform) never imports a feature or an entry point, so a
feature can be read, tested and changed without the rest of the service.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = {"tasks.cli", "tasks.worker", "tasks.wiring", "webhooks"}
FEATURES = {"tasks.ci", "tasks.chatops", "tasks.deploy", "tasks.incidents", "tasks.infra"}
# Among features, arrows point down this list: ChatOps commands drive the others; CI failures,
# incidents and infrastructure plans use deploys; deploys use no other feature.
FEATURE_RANK = {"tasks.chatops": 2, "tasks.ci": 1, "tasks.incidents": 1, "tasks.infra": 1,
                "tasks.deploy": 0}
SHARED = {"tasks.gitlab", "tasks.intake", "tasks.engine", "tasks.config", "tasks.platform"}
# (importer, imported): each with the reason it is allowed.
EXCEPTIONS = {
    # `verify_ssl: false` is announced once when the configuration is loaded, by the adapter
    # that silences urllib3's per-call warning for that host.
    ("tasks.config.environments", "tasks.deploy.kube"),
}


def modules() -> dict[str, Path]:
    out = {}
    for path in [*ROOT.joinpath("tasks").rglob("*.py"), *ROOT.joinpath("webhooks").rglob("*.py")]:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours `path` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known.keys()
            # `from pkg import submodule` depends on the submodule (and pkg's __init__, which
            # is then only a docstring or re-exports nothing that imports back).
            out |= subs or ({node.module} & known.keys())
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names} & known.keys()
    return out


def layer(module: str) -> str:
    for name, group in (("entry", ENTRY), ("feature", FEATURES), ("shared", SHARED)):
        if any(module == p or module.startswith(p + ".") for p in group):
            return name
    return "other"


GRAPH = {m: imports(p, modules()) for m, p in modules().items()}


def test_every_package_belongs_to_a_layer():
    assert [m for m in GRAPH if layer(m) == "other" and m != "tasks"] == []


def test_no_import_cycles():
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for dep in sorted(GRAPH[m]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep):], dep] if dep in stack else [m, dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_arrows_point_one_way():
    rank = {"entry": 2, "feature": 1, "shared": 0}
    upward = sorted((m, d) for m, deps in GRAPH.items() for d in deps
                    if rank[layer(d)] > rank[layer(m)] and (m, d) not in EXCEPTIONS)
    assert upward == []


def feature(module: str) -> str | None:
    return next((f for f in FEATURES if module == f or module.startswith(f + ".")), None)


def test_features_depend_on_each_other_one_way():
    wrong = sorted((m, d) for m, deps in GRAPH.items() for d in deps
                   if feature(m) and feature(d) and feature(m) != feature(d)
                   and FEATURE_RANK[feature(d)] >= FEATURE_RANK[feature(m)])
    assert wrong == []


def test_the_checks_see_the_code():
    # A graph this test could not read would pass vacuously.
    assert len(GRAPH) > 100 and sum(len(d) for d in GRAPH.values()) > 200
    assert "tasks.ci.triage" in GRAPH["tasks.ci.pipeline_failed"]
