"""Required literals: a pattern is looked for by text every match contains, and must then find
exactly what the full regex finds."""

from __future__ import annotations

import pytest

from tasks.ci.rules import load_table, prefilter
from tasks.ci.rules.corpus import load_manifest
from tasks.ci.rules.literals import required_literals
from tasks.ci.rules.table import CATEGORIES

from .conftest import LOGS


@pytest.mark.parametrize("pattern, expected", [
    (r"Could not resolve dependencies for project (?P<p>\S+)",
     [(b"Could not resolve dependencies for project ", False)]),
    (r"(?i)\btoomanyrequests\b", [(b"toomanyrequests", True)]),
    (r"npm (?:ERR!|error) code ERESOLVE", [(b" code ERESOLVE", False)]),
    # Python's parser takes the alternatives' common prefix "Co" out of the branch.
    (r"(?:Connection timed out|Could not resolve host) after", [(b"nnection timed out", False),
                                                               (b"uld not resolve host", False)]),
    (r"fatal: unable to access '[^']+': (?P<why>.+)", [(b"fatal: unable to access '", False)]),
    (r"(?:aaaa)?xyz", None),  # the only long text is optional: nothing is required
    (r"a{0,3}bbbbbbbbbb", [(b"bbbbbbbbbb", False)]),
    (r"(?:ab|cdefghijklmn)", None),  # "ab" is too short to look for
    (r"\d+ examples?, [1-9]\d* failures?", [(b" example", False)]),  # "s?" ends the run
    (r"\d+ runs?, [1-9]\d* errs?", None),  # no run of 8 literal bytes
    (r"[[:alpha:]]+ xxxxxxxxxx", None),  # POSIX class: re2 syntax, not ours to parse
    (r"(?i)déjà vu happened here", None),  # re2 folds Latin-1 letters, Hyperscan does not
    (r"✖ (?P<n>\d+) problems? found", [(b" problem", False)]),
    (r"\pL+ something long", None),  # Python's parser does not know \pL
    (r"(?P<a>x)(?P=a) yyyyyyyyyy", None),  # a backreference: never guess around it
])
def test_required_literals(pattern, expected):
    assert required_literals(pattern) == expected


def test_literal_prefilter_finds_what_the_regexes_find_on_the_whole_corpus(monkeypatch):
    with_literals = load_table(use_hyperscan=True)
    monkeypatch.setattr(prefilter, "required_literals", lambda *a, **k: None)
    monkeypatch.setenv("DEVOPS_AGENT_CACHE_DIR", "")  # the cache would hand back the analysis
    regexes = load_table(use_hyperscan=True)
    assert with_literals.engine.prefilter.hs.literal_patterns > 300
    assert regexes.engine.prefilter.hs.literal_patterns == 0
    for entry in load_manifest(LOGS, CATEGORIES):
        data = entry.path.read_bytes()
        a, b = with_literals.classify([data]), regexes.classify([data])
        assert a.to_dict() == b.to_dict(), entry.name


if prefilter.hyperscan is None:  # pragma: no cover - the re2 Set path has no literals to test
    pytestmark = pytest.mark.skip("hyperscan is not installed on this platform")
