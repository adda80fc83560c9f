"""Each feature's GitLab port says exactly which calls it makes, and the real adapter and the
recording fake both answer every port with the same parameters, so the three cannot drift.

* Every call a feature makes on a GitLab client (a receiver named `gitlab` or `gl`) is declared
  in its port (or a shared port it extends): a new call without a declaration fails here.
* Every call a port declares itself is made by its feature: ports stay narrow.
* `GitLabAdapter` and `RecordingGitLab` define every port method with the port's parameter
  names, kinds and defaults.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Protocol

import pytest

from tasks.chatops.ports import ChatOpsGitLab
from tasks.ci.ports import CIGitLab
from tasks.deploy.ports import DeployGitLab
from tasks.gitlab.client import GitLabAdapter
from tasks.gitlab.ports import CommentsPort, FactsPort
from tests.support.recording_gitlab import RecordingGitLab

ROOT = Path(__file__).resolve().parents[1]
FEATURE_PORTS = {"tasks/ci": CIGitLab, "tasks/chatops": ChatOpsGitLab, "tasks/deploy": DeployGitLab}
SHARED_PORTS = {"tasks/gitlab/comments.py": CommentsPort, "tasks/gitlab/facts.py": FactsPort}
ADAPTER_METHODS = {n for n, _ in inspect.getmembers(GitLabAdapter, inspect.isfunction)
                   if not n.startswith("_")}


def declared(port: type, own_only: bool = False) -> set[str]:
    classes = [port] if own_only else [c for c in port.__mro__
                                       if (c not in (object, Protocol) and Protocol in c.__bases__)
                                       or c is port]
    return {name for c in classes for name, value in vars(c).items()
            if callable(value) and not name.startswith("_")}


def client_calls(path: Path) -> dict[str, list[str]]:
    """Adapter methods called on something named like a GitLab client, with where."""
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    out: dict[str, list[str]] = {}
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            name = receiver.id if isinstance(receiver, ast.Name) else getattr(receiver, "attr", None)
            if name in ("gitlab", "gl") and node.func.attr in ADAPTER_METHODS:
                out.setdefault(node.func.attr, []).append(f"{file.relative_to(ROOT)}:{node.lineno}")
    return out


@pytest.mark.parametrize("where, port", [*FEATURE_PORTS.items(), *SHARED_PORTS.items()])
def test_every_call_is_declared_in_the_port(where, port):
    calls = client_calls(ROOT / where)
    assert calls, f"no GitLab calls found in {where}: the scan would pass vacuously"
    undeclared = {m: at for m, at in calls.items() if m not in declared(port)}
    assert undeclared == {}


@pytest.mark.parametrize("where, port", [*FEATURE_PORTS.items(), *SHARED_PORTS.items()])
def test_every_declared_call_is_made(where, port):
    assert declared(port, own_only=True) - set(client_calls(ROOT / where)) == set()


def _shape(fn) -> list[tuple[str, object, bool]]:
    return [(p.name, p.kind, p.default is not inspect.Parameter.empty)
            for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("implementation", [GitLabAdapter, RecordingGitLab])
@pytest.mark.parametrize("port", [CIGitLab, ChatOpsGitLab, DeployGitLab, CommentsPort, FactsPort])
def test_implementations_answer_every_port(implementation, port):
    wrong = {}
    for name in declared(port):
        ours = getattr(implementation, name, None)
        if ours is None:
            wrong[name] = "missing"
        elif _shape(ours) != _shape(getattr(port, name)):
            wrong[name] = f"{_shape(ours)} != {_shape(getattr(port, name))}"
    assert wrong == {}
