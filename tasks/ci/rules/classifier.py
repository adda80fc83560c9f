"""The layered classifier: GitLab's own signals, the rules table, the context tier, corrections.

One pass over the log (the rules engine) feeds every layer; each layer says why it decided:

1. **gitlab**: a failure reason GitLab itself reports that is not the script's fault
   (`runner_system_failure`, `job_execution_timeout`, ...) decides the category; a rule of the
   same category that matched the log adds its detail. The exit code GitLab printed at the end
   of the log (`ERROR: Job failed: exit code 137`) is handed to the rules, so exit-code rules fire.
2. **rules**: the first matching rule, with its evidence lines ("matched rule X on line N").
3. **context**: no rule matched: the failing command, its tool, the job and stage names, and
   error markers (context.py), with a confidence.
4. **learned**: a person corrected a failure with the same signature before (`/devops classify`):
   their category wins, and the verdict says who taught it.

Every verdict also carries the most likely failing lines (errorlines.py), even when `unknown`.
Only high-confidence verdicts may lead to a retry; the rule's reaction says whether one does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Protocol

from . import reasons
from .context import infer
from .errorlines import error_lines, marker_count
from .facts import Line, LogFacts, read_facts
from .result import Classification, Evidence, Reaction
from .signature import normalise, signature_of
from .table import RuleTable

LAYERS = ("gitlab", "rules", "context", "learned", "none")
CONFIDENCES = ("high", "medium", "low")

_GUIDANCE = {
    "compile_error": "the build step did not complete",
    "test_failure": "tests failed",
    "lint_failure": "a linter or formatter check failed",
    "security_scan_failure": "a security scan failed",
    "dependency_resolution": "dependencies could not be installed",
}


@dataclass(frozen=True)
class Correction:
    """What a person said about a failure signature (kept by the learning loop)."""

    category: str
    by: str
    where: str = ""  # e.g. "acme/shop!12" or "job #4711"


class Corrections(Protocol):
    def correction(self, signature: str) -> Correction | None: ...


@dataclass(frozen=True)
class Verdict:
    category: str
    layer: str  # gitlab | rules | context | learned | none
    confidence: str  # high | medium | low
    reason: str  # why, in one sentence a person can check
    description: str
    next_steps: str = ""
    rule_id: str | None = None
    reaction: Reaction = field(default_factory=Reaction)
    evidence: list[Evidence] = field(default_factory=list)  # the lines that decided
    error_lines: list[Line] = field(default_factory=list)  # where to start reading, always
    also_matched: list[str] = field(default_factory=list)
    matched_lines: int = 0
    exit_code: int | None = None
    failing_command: Line | None = None
    tool: str | None = None
    signature: str = ""
    signature_line: str = ""  # the normalised line the signature was made from
    original_category: str | None = None  # before a person's correction

    @property
    def may_retry(self) -> bool:
        """Retries are only ever triggered by high-confidence verdicts whose rule says so."""
        return self.confidence == "high" and self.reaction.kind == "retry"

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "layer": self.layer,
            "confidence": self.confidence,
            "reason": self.reason,
            "rule": self.rule_id,
            "description": self.description,
            "evidence": [e.to_dict() for e in self.evidence],
            "error_lines": [{"line": ln.number, "text": ln.text} for ln in self.error_lines],
            "matched_lines": self.matched_lines,
            "also_matched": list(self.also_matched),
            "exit_code": self.exit_code,
            "failing_command": ({"line": self.failing_command.number,
                                 "text": self.failing_command.text}
                                if self.failing_command else None),
            "tool": self.tool,
            "signature": self.signature,
            "next_steps": self.next_steps,
            "reaction": self.reaction.to_dict(),
            "original_category": self.original_category,
        }


class Classifier:
    """The layers over one compiled rules table; thread-safe like the table."""

    def __init__(self, table: RuleTable, corrections: Corrections | None = None) -> None:
        self.table = table
        self.corrections = corrections

    def classify(self, chunks: Iterable[bytes] | BinaryIO | None, *,
                 failure_reason: str | None = None, job_name: str | None = None,
                 stage: str | None = None, exit_code: int | None = None) -> Verdict:
        scan = self.table.scan(chunks)
        facts = read_facts(scan)
        if exit_code is None:
            exit_code = facts.exit_code
        lines = error_lines(facts)
        base = dict(exit_code=exit_code, failing_command=facts.command, error_lines=lines)
        reason = reasons.normalise(failure_reason)
        winners = self.table.matching(scan, failure_reason=failure_reason, job_name=job_name,
                                      stage=stage, exit_code=exit_code)
        verdict = self._gitlab(scan, winners, reason, facts, base) \
            or self._rules(scan, winners, base) \
            or self._context(facts, job_name, stage, base) \
            or self._unknown(facts, reason, base)
        return self._learned(verdict)

    # -- the layers ---------------------------------------------------------------------------
    def _gitlab(self, scan: Any, winners: list[int], reason: str | None, facts: LogFacts,
                base: dict[str, Any]) -> Verdict | None:
        decisive = reasons.DECISIVE.get(reason or "")
        if decisive is not None:
            same = [i for i in winners if self.table.rules[i].category == decisive]
            # A rule of GitLab's category that matched the log says more than the reason alone.
            with_log = [i for i in same if self.table.rules[i].match.log]
            chosen = with_log or same
            said = f"GitLab reported failure reason `{reason}`"
            if chosen:
                order = chosen[:1] + [i for i in winners if i != chosen[0]]
                c = self.table.result(scan, order)
                if with_log:
                    said += f"; rule `{c.rule_id}` matched line {c.evidence[0].line}"
                return self._from_rule(c, "gitlab", said, base)
            return self._verdict(category=decisive, layer="gitlab", confidence="high",
                                 reason=said, description=reasons.EXPLAIN.get(reason or "", said),
                                 key=f"gitlab:{reason}", line=reason, **base)
        if winners and not self.table.rules[winners[0]].match.log:
            # Only GitLab's fields matched (an exit code, a failure reason rule of the user's).
            c = self.table.result(scan, winners)
            code = base["exit_code"]
            said = (f"the job's exit code {code}"
                    + (f" (line {facts.exit_line.number})" if facts.exit_line else "")
                    if code is not None and self.table.rules[winners[0]].match.exit_codes
                    else f"GitLab's job fields (failure reason `{reason}`)")
            return self._from_rule(c, "gitlab", f"{said} matched rule `{c.rule_id}`", base)
        return None

    def _rules(self, scan: Any, winners: list[int], base: dict[str, Any]) -> Verdict | None:
        if not winners:
            return None
        c = self.table.result(scan, winners)
        where = f" on line {c.evidence[0].line}" if c.evidence else ""
        return self._from_rule(c, "rules", f"matched rule `{c.rule_id}`{where}", base)

    def _context(self, facts: LogFacts, job_name: str | None, stage: str | None,
                 base: dict[str, Any]) -> Verdict | None:
        if facts.succeeded and base["exit_code"] is None:
            return None  # the runner says the job passed: there is no failure to infer
        guess = infer(facts, job_name=job_name, stage=stage, markers=marker_count(facts))
        if guess is None:
            return None
        what = f"`{guess.tool}`" if guess.tool else "the job"
        description = (f"{what} failed: {_GUIDANCE.get(guess.category, guess.category)} "
                       "(no rule matched; inferred from context)")
        evidence = [Evidence(facts.command.number, f"$ {facts.command.text}")] \
            if facts.command else []
        first = base["error_lines"][0].text if base["error_lines"] else ""
        return self._verdict(category=guess.category, layer="context",
                             confidence=guess.confidence, reason=guess.reason,
                             description=description, tool=guess.tool, evidence=evidence,
                             next_steps=_context_steps(guess.category, facts),
                             key=f"context:{guess.category}:{guess.tool or ''}", line=first, **base)

    def _unknown(self, facts: LogFacts, reason: str | None, base: dict[str, Any]) -> Verdict:
        why = "no rule matched"
        if facts.succeeded and base["exit_code"] is None:
            why += " and the log ends with GitLab's `Job succeeded`"
        elif facts.command is None:
            why += " and the log does not show which command failed"
        else:
            why += f" and the failing command `$ {facts.command.text[:80]}` names no known tool"
        if reason and reason not in ("script_failure", "unknown_failure"):
            why += f"; GitLab's failure reason is `{reason}`"
        first = base["error_lines"][0].text if base["error_lines"] else ""
        return self._verdict(category="unknown", layer="none", confidence="low", reason=why,
                             description=Classification().description,
                             next_steps=_context_steps("unknown", facts), key="unknown",
                             line=first, **base)

    def _learned(self, verdict: Verdict) -> Verdict:
        if self.corrections is None or not verdict.signature:
            return verdict
        taught = self.corrections.correction(verdict.signature)
        if taught is None or taught.category == verdict.category:
            return verdict
        where = f" on {taught.where}" if taught.where else ""
        return replace(
            verdict, category=taught.category, layer="learned", confidence="high",
            reason=(f"corrected to {taught.category} by @{taught.by}{where} for the same failure "
                    f"(was {verdict.category}: {verdict.reason})"),
            # A correction names a category, not a remedy: report it, never retry on it.
            reaction=Reaction(), original_category=verdict.category)

    # -- building verdicts --------------------------------------------------------------------
    def _from_rule(self, c: Classification, layer: str, reason: str,
                   base: dict[str, Any]) -> Verdict:
        first = c.evidence[0].text if c.evidence else (base["exit_code"] or "")
        return self._verdict(category=c.category, layer=layer, confidence="high", reason=reason,
                             description=c.description, next_steps=c.next_steps,
                             rule_id=c.rule_id, reaction=c.reaction, evidence=list(c.evidence),
                             also_matched=list(c.also_matched), matched_lines=c.matched_lines,
                             key=f"rule:{c.rule_id}", line=str(first), **base)

    @staticmethod
    def _verdict(*, key: str, line: str | None, **fields: Any) -> Verdict:
        normal = normalise(line or "")
        return Verdict(signature=signature_of(key, normal), signature_line=normal, **fields)


def _context_steps(category: str, facts: LogFacts) -> str:
    command = f"`{facts.command.text[:120]}`" if facts.command else "the failing step"
    if category == "unknown":
        return ("Diagnose: start with the lines shown; no rule knows this failure yet. "
                "Fix: if the category is clear to you, tell devops-agent with "
                "`/devops classify <category>` so the next failure like it is recognised.")
    return (f"Diagnose: run {command} locally (same image and versions as the job) and read its "
            "first error above the lines shown. Fix: correct what it reports; if the category "
            "is wrong, answer `/devops classify <category>` so devops-agent learns it.")
