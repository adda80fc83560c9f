"""The whole corpus, scored as `devops-agent rules evaluate` scores it: at least 95% of the failed
jobs get their manifest category, and no rule fires on a job that passed."""

from __future__ import annotations

MIN_ACCURACY = 0.95


def test_accuracy_per_category_and_no_false_alarms(corpus_report, capsys):
    report = corpus_report
    with capsys.disabled():
        print("\n" + report.table())
    misses = [(r.entry.name, r.entry.category, r.category) for r in report.failed if not r.correct]
    assert report.accuracy >= MIN_ACCURACY, misses
    assert not report.false_positives, [(r.entry.name, r.rule, r.also_matched)
                                        for r in report.false_positives]
    assert len(report.failed) >= 260 and len(report.passed) >= 40
