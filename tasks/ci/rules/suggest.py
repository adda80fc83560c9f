"""Rule proposals (behind `devops-agent rules suggest`, cli/suggest.py): cluster failures no rule
knew (or people corrected) and propose a rule per cluster, with the examples it covers.

Each example's most telling line (the error-line finder's best) is normalised (numbers, paths,
hashes, quoted names out) and mined into templates with drain3, the log-template miner from
IBM's Drain algorithm. A template becomes a google-re2 pattern (its literal words kept, its
variable parts `\\S+`), which is then checked against the examples' real lines: a proposal only
covers the examples its pattern really matches, and only patterns with enough literal text to
be specific are proposed. The category is what people corrected the examples to (majority);
clusters nobody corrected get the context tier's guess, marked as a guess.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import re2
import yaml
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from .engine import compile_re2
from .errorlines import score
from .signature import normalise

MIN_LITERAL_CHARS = 12
MAX_EXAMPLES_SHOWN = 5
_PLACEHOLDER = re.compile(r"^<(?:\*|n|q|path|hex|url|uuid|time)>$")


@dataclass
class Proposal:
    id: str
    category: str
    category_source: str  # "corrected" (people said so) or "guess"
    pattern: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    template: str = ""

    def to_yaml(self) -> str:
        shown = self.examples[:MAX_EXAMPLES_SHOWN]
        lines = [f"  # {len(self.examples)} example(s); category {self.category_source}"
                 + (" (check it)" if self.category_source == "guess" else "")]
        for ex in shown:
            where = ex.get("project_path") or ex.get("project") or "?"
            lines.append(f"  #   {where} job {ex.get('job', '?')}: {str(ex['line'])[:150]}")
        rule = {"id": self.id, "category": self.category, "priority": 100,
                "description": f"{self.category.replace('_', ' ')}: "
                               f"{self.template[:80]}",
                "match": {"log": [self.pattern]},
                "reaction": {"kind": "fix"},
                "next_steps": "Diagnose: (what the line means, where to look) "
                              "Fix: (what usually resolves it)"}
        body = yaml.safe_dump([rule], sort_keys=False, allow_unicode=True, width=100)
        lines += ["  " + ln if ln else ln for ln in body.rstrip("\n").split("\n")]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "category_source": self.category_source,
                "pattern": self.pattern, "template": self.template,
                "examples": [{k: v for k, v in ex.items() if k != "lines"} for ex in self.examples]}


def key_line(example: dict[str, Any]) -> str | None:
    """The example's most telling line: the best-scoring one, the first among equals."""
    lines = [str(x) for x in example.get("lines") or [] if str(x).strip()]
    if not lines:
        return None
    return max(lines, key=lambda ln: (score(ln), -lines.index(ln)))


def template_pattern(template: str) -> tuple[str, int]:
    """(re2 pattern, literal characters) for a drain3 template over normalised text."""
    parts: list[str] = []
    literal = 0
    for token in template.split():
        if _PLACEHOLDER.match(token) or ("<" in token and ">" in token):
            # A token that mixes text with a placeholder ("-l<*>", "'<q>'"): keep the text.
            pieces = re.split(r"(<(?:\*|n|q|path|hex|url|uuid|time)>)", token)
            out: list[str] = []
            for piece in pieces:
                if _PLACEHOLDER.match(piece or "x"):
                    out.append(r"\S*" if out else r"\S+")
                elif piece:
                    out.append(re.escape(piece))
                    literal += len(piece)
            parts.append("".join(out) or r"\S+")
        else:
            parts.append(re.escape(token))
            literal += len(token)
    while parts and parts[0] in (r"\S+", r"\S*"):
        parts.pop(0)
    while parts and parts[-1] in (r"\S+", r"\S*"):
        parts.pop()
    # Templates are mined from lower-cased text; the real lines keep their case.
    return ("(?i)" + r"\s+".join(parts)) if parts else "", literal


def suggest(examples: Iterable[dict[str, Any]], *, min_examples: int = 2,
            similarity: float = 0.5) -> list[Proposal]:
    """Proposals for clusters of at least `min_examples` examples, biggest first."""
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    config.drain_sim_th = similarity
    miner = TemplateMiner(config=config)
    members: dict[int, list[dict[str, Any]]] = {}
    for example in examples:
        line = key_line(example)
        if line is None:
            continue
        result = miner.add_log_message(normalise(line, quoted=True))
        members.setdefault(result["cluster_id"], []).append({**example, "line": line})
    proposals: list[Proposal] = []
    used_ids: set[str] = set()
    for cluster in miner.drain.clusters:
        group = members.get(cluster.cluster_id, [])
        if len(group) < min_examples:
            continue
        template = cluster.get_template()
        pattern, literal = template_pattern(template)
        if literal < MIN_LITERAL_CHARS or not pattern:
            continue
        try:
            rx = compile_re2(pattern)  # exactly as the engine will run it
        except re2.error:
            continue
        covered = [ex for ex in group if rx.search(ex["line"].encode("utf-8", "replace"))]
        if len(covered) < min_examples:
            continue
        corrected = Counter(ex["category"] for ex in covered if ex.get("category"))
        if corrected:
            category, source = corrected.most_common(1)[0][0], "corrected"
        else:
            guessed = Counter(ex.get("classified_as") for ex in covered
                              if ex.get("classified_as") not in (None, "unknown"))
            category = guessed.most_common(1)[0][0] if guessed else "unknown"
            source = "guess"
        proposals.append(Proposal(id=_rule_id(template, used_ids), category=category,
                                  category_source=source, pattern=pattern,
                                  examples=covered, template=template))
    proposals.sort(key=lambda p: (-len(p.examples), p.id))
    return proposals


def _rule_id(template: str, used: set[str]) -> str:
    words = [w for w in re.findall(r"[a-z][a-z0-9]+", template.lower())
             if w not in ("error", "q", "n", "path", "hex", "url", "the", "for", "and", "not")][:4]
    base = "suggested-" + ("-".join(words) or "failure")
    rid, n = base[:90], 2
    while rid in used:
        rid = f"{base[:86]}-{n}"
        n += 1
    used.add(rid)
    return rid


def render_yaml(proposals: list[Proposal]) -> str:
    head = ["# Rules proposed by `devops-agent rules suggest`: review each one (pattern, category,",
            "# description, next steps) before adding it to your RULES_FILE.", "version: 1",
            "rules:"]
    if not proposals:
        return "\n".join(head) + " []\n"
    return "\n".join(head + [p.to_yaml() for p in proposals]) + "\n"
