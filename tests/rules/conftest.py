"""Shared fixtures for the rules tests: tables compiled once per session, per backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ci.rules import load_table, prefilter

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "fixtures" / "logs"

BACKENDS = ["re2"] + (["hyperscan"] if prefilter.hyperscan is not None else [])


@pytest.fixture(scope="session", params=BACKENDS)
def default_table(request):
    """The shipped table, once with Hyperscan as prefilter and once with re2 only."""
    return load_table(use_hyperscan=request.param == "hyperscan")


def write_rules(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def pytest_configure(config):
    # Registered here (not pyproject) so the marker travels with the only tests that use it.
    config.addinivalue_line(
        "markers", "slow: long-running test (the 1 GB streaming log); deselect with -m 'not slow'")
