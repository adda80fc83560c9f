"""The labelled log corpus: a manifest of real CI logs with the category each should get.

`fixtures/logs/` holds the shipped corpus (one manifest, README there); `devops-agent rules
evaluate` and the accuracy test read it through `load_manifest` and score a classifier with
`evaluate`. A user can keep a corpus of their own logs in the same format and evaluate a rules
file against it before deploying it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OUTCOMES = ("failed", "passed")
MAX_MANIFEST_BYTES = 4 << 20
_ENTRY_KEYS = {"file", "outcome", "category", "rule", "source", "note", "job"}
_JOB_KEYS = {"name", "stage", "failure_reason", "exit_code"}


class ManifestError(ValueError):
    """The manifest is malformed; the message names the file, entry and field."""


@dataclass(frozen=True)
class Entry:
    path: Path
    outcome: str  # "failed": the job failed and should get `category`; "passed": it passed
    category: str
    source: str
    rule: str | None = None  # the default rule this log is the excerpt for
    job: dict[str, Any] = field(default_factory=dict)  # name, stage, failure_reason, exit_code
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def manifest_files(target: Path) -> list[Path]:
    """A manifest file; a folder's own manifest.yaml; else every manifest.yaml below it."""
    if target.is_dir():
        own = target / "manifest.yaml"
        return [own] if own.is_file() else sorted(target.rglob("manifest.yaml"))
    return [target]


def load_manifest(target: Path, categories: Iterable[str] | None = None) -> list[Entry]:
    """Every entry of the manifest(s) at `target`; ManifestError lists every problem."""
    known = set(categories) if categories is not None else None
    entries: list[Entry] = []
    problems: list[str] = []
    seen: dict[Path, str] = {}
    for mf in manifest_files(target):
        try:
            raw = mf.read_bytes()
        except OSError as exc:
            problems.append(f"{mf}: cannot read: {exc.strerror or exc}")
            continue
        if len(raw) > MAX_MANIFEST_BYTES:
            problems.append(f"{mf}: larger than {MAX_MANIFEST_BYTES} bytes")
            continue
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problems.append(f"{mf}: not valid YAML: {exc}")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("logs") or [], list):
            problems.append(f"{mf}: expected a mapping with a `logs:` list")
            continue
        base = mf.resolve().parent
        for i, item in enumerate(data["logs"] or []):
            where = f"{mf}: logs[{i}]"
            if not isinstance(item, dict):
                problems.append(f"{where}: expected a mapping")
                continue
            unknown = set(item) - _ENTRY_KEYS
            if unknown:
                problems.append(f"{where}: unknown key(s) {sorted(unknown)}")
            file, outcome, category = item.get("file"), item.get("outcome"), item.get("category")
            source = item.get("source")
            if not isinstance(file, str) or not file:
                problems.append(f"{where}: file: required")
                continue
            where = f"{mf}: {file}"
            path = (base / file).resolve()
            if not path.is_file():
                problems.append(f"{where}: no such log")
            if path in seen:
                problems.append(f"{where}: listed twice (also in {seen[path]})")
            seen[path] = str(mf)
            if outcome not in OUTCOMES:
                problems.append(f"{where}: outcome: expected failed or passed")
            if not isinstance(category, str) or (known is not None and category not in known):
                problems.append(f"{where}: category: unknown {category!r}")
            if outcome == "passed" and category != "unknown":
                problems.append(f"{where}: a passed job's category must be unknown")
            if not isinstance(source, str) or not source.strip():
                problems.append(f"{where}: source: required (where the log was published)")
            job = item.get("job") or {}
            if not isinstance(job, dict) or set(job) - _JOB_KEYS:
                problems.append(f"{where}: job: a mapping of {sorted(_JOB_KEYS)}")
                job = {}
            entries.append(Entry(path=path, outcome=str(outcome), category=str(category),
                                 source=str(source or ""), rule=item.get("rule"), job=dict(job),
                                 note=str(item.get("note") or "")))
    if problems:
        raise ManifestError("invalid corpus manifest:\n  " + "\n  ".join(problems))
    return entries


@dataclass
class Result:
    entry: Entry
    category: str
    rule: str | None
    also_matched: list[str]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        if self.entry.outcome == "passed":
            return not self.false_positive
        return self.category == self.entry.category

    @property
    def false_positive(self) -> bool:
        """On a passing log, any rule firing at all (winner or also-matched) is a false alarm."""
        return self.entry.outcome == "passed" and bool(self.rule or self.also_matched)


@dataclass
class Report:
    results: list[Result]

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.entry.outcome == "failed"]

    @property
    def passed(self) -> list[Result]:
        return [r for r in self.results if r.entry.outcome == "passed"]

    @property
    def accuracy(self) -> float:
        failed = self.failed
        return sum(r.correct for r in failed) / len(failed) if failed else 1.0

    @property
    def false_positives(self) -> list[Result]:
        return [r for r in self.passed if r.false_positive]

    def per_category(self) -> dict[str, tuple[int, int]]:
        """category -> (logs, classified correctly), failed logs only."""
        totals: Counter[str] = Counter()
        right: Counter[str] = Counter()
        for r in self.failed:
            totals[r.entry.category] += 1
            right[r.entry.category] += r.correct
        return {c: (totals[c], right[c]) for c in sorted(totals)}

    def confusion(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for r in self.failed:
            if not r.correct:
                out[r.entry.category][r.category] += 1
        return dict(out)

    def table(self) -> str:
        """The per-category table (Markdown), as the README shows it."""
        lines = ["| category | logs | right | accuracy |", "|---|---:|---:|---:|"]
        for cat, (n, ok) in self.per_category().items():
            lines.append(f"| `{cat}` | {n} | {ok} | {ok / n:.0%} |")
        failed = self.failed
        ok = sum(r.correct for r in failed)
        lines.append(f"| **all failed jobs** | {len(failed)} | {ok} | {self.accuracy:.1%} |")
        passed = self.passed
        lines.append(f"| passing jobs: false alarms | {len(passed)} | "
                     f"{len(passed) - len(self.false_positives)} | "
                     f"{len(self.false_positives)} false positive"
                     f"{'s' if len(self.false_positives) != 1 else ''} |")
        guessed = [r for r in passed if r.category != "unknown" and not r.false_positive]
        if guessed:
            # No rule fired; the context tier guessed from the command, as it would for a job
            # that had failed (the service only ever classifies failed jobs).
            lines.append(f"| passing jobs: context-tier guesses (no rule fired) | {len(passed)} | "
                         f"{len(passed) - len(guessed)} | {len(guessed)} low-confidence guesses |")
        return "\n".join(lines)


Classify = Callable[[Entry], Result]


def evaluate(entries: list[Entry], classify: Classify) -> Report:
    return Report([classify(e) for e in entries])


def layered_classifier(classifier: Any) -> Classify:
    """Score the whole layered classifier (what the service and `classify` run) on each entry."""

    def run(entry: Entry) -> Result:
        with open(entry.path, "rb") as fh:
            v = classifier.classify(fh, failure_reason=entry.job.get("failure_reason"),
                                    job_name=entry.job.get("name"), stage=entry.job.get("stage"),
                                    exit_code=entry.job.get("exit_code"))
        return Result(entry, v.category, v.rule_id, list(v.also_matched),
                      {"evidence": [e.text for e in v.evidence[:2]], "layer": v.layer,
                       "confidence": v.confidence})

    return run
