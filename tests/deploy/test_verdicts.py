"""The verdict table: every end a record can reach maps to exactly one verdict per request kind,
each label is a status label, and the README's table is the one in code."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pytest

from tasks.config.agent import STATUS_LABELS, Labels
from tasks.deploy.model import DeployRecord
from tasks.deploy.verdicts import END, START, VERDICTS, aborted_by, block, detail, outcome, verdict

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_verdict_table_is_current():
    text = README.read_text()
    assert text[text.index(START): text.index(END) + len(END)] == block(), \
        "README.md's verdict table is stale: run `python -m tasks.deploy.verdicts README.md`"


def test_every_verdict_is_listed_once_and_names_a_status_label():
    keys = [(v.action, v.outcome) for v in VERDICTS]
    assert len(keys) == len(set(keys))
    for v in VERDICTS:
        assert v.label is None or v.label in STATUS_LABELS, v
        assert v.label is not None or v.outcome == "refused", v  # only a refusal keeps labels
        assert "{env}" in v.words and v.emoji and v.when


def record(kind: str, status: str, abort: str = "", **data) -> DeployRecord:
    return DeployRecord(id="staging-1", kind=kind, project="15", env="staging", strategy="rolling",
                        requested_by="alice", image="reg/web:v2", status=status,  # type: ignore[arg-type]
                        abort_requested=abort, reason="why", data=dict(data))


@pytest.mark.parametrize("kind,status,abort", list(product(
    ["deploy", "rollback"], ["running", "paused", "succeeded", "failed", "rolled_back"], ["", "x"])))
def test_each_record_state_has_a_verdict_for_every_request_it_carries(kind, status, abort):
    rec = record(kind, status, abort if kind == "deploy" else "")
    actions = ["deploy", "rollback", "promote"] if kind == "deploy" else ["rollback"]
    for action in actions:
        result = outcome(rec, action)
        if status == "running":
            assert result is None
            continue
        if action == "rollback" and status == "paused":
            continue  # an abort resumes a paused deploy: a rollback never waits on a pause
        verdict(action, result)  # KeyError: a state the table does not cover


def test_a_deploy_aborted_for_a_rollback_and_that_rollback_are_told_apart():
    rec = record("deploy", "rolled_back", "rollback requested by bob: broken checkout",
                 restored={"image": "reg/web:v1", "revision": 1})
    rec.followers.append({"action": "rollback", "by": "bob", "handle": "h"})
    assert (outcome(rec), outcome(rec, "rollback")) == ("aborted", "succeeded")
    assert aborted_by(rec) == "bob"
    assert verdict("deploy", "aborted").text("staging", detail(rec), by=aborted_by(rec)) == (
        "⏹️ deploy of `staging` aborted by @bob for a rollback: staging runs reg/web:v1 again; "
        "reg/web:v2 was undone")
    assert "was aborted and undone; staging runs reg/web:v1 again" in detail(rec, "rollback")
    # the same end without a rollback asking: its checks failed
    assert outcome(record("deploy", "rolled_back")) == "rolled_back"
    # a rollback whose deploy finished before it could abort it did not roll anything back
    done = record("deploy", "succeeded", "rollback requested by bob")
    assert outcome(done, "rollback") == "failed" and "nothing was rolled back" in detail(done, "rollback")


def test_a_successful_rollback_is_a_success():
    rec = record("rollback", "rolled_back")
    assert outcome(rec) == "succeeded"
    v = verdict("rollback", "succeeded")
    assert v.emoji == "✅" and Labels().name(v.label, "staging") == "env::staging::rolled-back"
