"""Fuzzing the Alertmanager receiver's checks and the incident rendering with hypothesis.

Whatever body arrives, `intake.validate` either accepts it or raises PayloadError with a 4xx
status (never anything else), an accepted body has a dedup key, and whatever text an alert
carries renders as one line without raw HTML, mentions or table breaks. Derandomized and
bounded for CI; FUZZ_EXAMPLES=n raises the count locally."""

from __future__ import annotations

import os
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.incidents import intake
from tasks.incidents.escape import code, text

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0) or 300

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
times = st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123456789+02:00",
                         "0001-01-01T00:00:00Z", "", "yesterday", "2024-05-01T10:00:00"])
alerts = st.fixed_dictionaries({
    "status": st.sampled_from(["firing", "resolved", "pending", ""]) | json_values,
    "labels": st.dictionaries(st.text(max_size=10), st.text(max_size=30) | json_values,
                              max_size=5) | json_values,
    "annotations": st.dictionaries(st.text(max_size=10), st.text(max_size=60), max_size=3),
    "startsAt": times | json_values, "endsAt": times,
    "generatorURL": st.text(max_size=30) | json_values,
    "fingerprint": st.text(max_size=20) | json_values,
})
bodies = st.fixed_dictionaries({
    "version": st.sampled_from(["4", "3", 4]) | json_values,
    "groupKey": st.text(max_size=30) | json_values,
    "status": st.sampled_from(["firing", "resolved"]) | json_values,
    "receiver": st.text(max_size=10) | json_values,
    "alerts": st.lists(alerts, max_size=4) | json_values,
}, optional={"groupLabels": json_values, "commonLabels": json_values,
             "truncatedAlerts": json_values, "externalURL": json_values})


@settings(max_examples=EXAMPLES, derandomize=not os.environ.get("FUZZ_EXAMPLES"), deadline=None)
@given(st.one_of(bodies, json_values))
def test_validate_accepts_or_refuses_with_a_4xx(payload):
    try:
        intake.validate(payload)
    except intake.PayloadError as exc:
        assert 400 <= exc.status < 500 and str(exc)
        return
    assert intake.dedup_key(payload).startswith("alertmanager:")


@settings(max_examples=EXAMPLES, derandomize=not os.environ.get("FUZZ_EXAMPLES"), deadline=None)
@given(st.text(max_size=400))
def test_any_alert_text_renders_as_one_inert_line(value):
    out = text(value)
    assert "\n" not in out and "<" not in out and ">" not in out
    # no mention or reference can form: every sigil is followed by a space, the zero-width
    # space, or nothing; every `|` is escaped
    assert not re.search(r"[@#!~%$][^\s\u200b\\]", out), out
    assert not re.search(r"(?<!\\)\|", out), out
    inline = code(value)
    assert inline.startswith("`") and inline.endswith("`") and inline.count("`") == 2
