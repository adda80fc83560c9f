"""The failure comment: one per linked issue (or the merge request), edited in place as later
pipelines for the ref finish, with the CI labels beside it.

`render` writes the table and the sentences from the stored job rows (what triage decided);
`explain` posts it and flips the labels; the thread a comment reports is kept for
`/devops classify` written under it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson

from tasks.ci.history import FailureHistory
from tasks.ci.linking import MAX_LINKED_ISSUES, linked
from tasks.ci.pipeline import PipelineRef
from tasks.ci.pipeline_fix import comment_sentence
from tasks.gitlab.comments import upsert_comment
from tasks.platform.store import Store


def explain(ctx: Any, store: Store, pipe: PipelineRef, *, passed: bool,
            failed_pipeline: int | None = None) -> None:
    """Refresh the one comment per linked issue (or the MR) and the CI labels."""
    settings, gitlab = ctx.settings, ctx.gitlab
    targets, overflow = linked(gitlab, pipe.project, ref=pipe.ref, mr_iid=pipe.mr_iid,
                               commit_message=pipe.commit_message)
    if not targets:
        ctx.decide("no-comment", reason="no linked issue or merge request", ref=pipe.ref)
        return
    rows = store.job_rows(pipe.project, failed_pipeline or pipe.pipeline)
    history = FailureHistory(ctx.redis)
    similar = {} if passed else {
        r["name"]: history.similar(r["signature"], project=pipe.project, ref=pipe.ref,
                                   default_branch=pipe.default_branch).sentence(pipe.default_branch)
        for r in rows if r.get("signature")}
    fixes = {} if passed else {r["name"]: comment_sentence(ctx.redis, pipe.project, r)
                               for r in rows}
    body = render(pipe, rows, passed=passed, failed_pipeline=failed_pipeline,
                  flaky_jobs=store.flaky(pipe.project, "jobs"),
                  flaky_tests=store.flaky(pipe.project, "tests"), similar=similar,
                  fixes={k: v for k, v in fixes.items() if v})
    if overflow:
        body += (f"\n\n<sub>{overflow} more linked issue(s) were not commented on: at most "
                 f"{MAX_LINKED_ISSUES} per pipeline.</sub>")
    categories = {r["category"] for r in rows if r.get("status") == "failed"}
    category_labels = [settings.label_category_prefix + c for c in sorted(categories)]
    rule_labels = sorted({label for r in rows for label in r.get("rule_labels", [])})
    thread = orjson.dumps({**asdict(pipe), "pipeline": failed_pipeline or pipe.pipeline,
                           "passed": passed})
    for kind, iid in targets:
        outcome = upsert_comment(gitlab, store, pipe.project, kind, iid, f"ci:{pipe.ref}", body)
        # What this thread's comment reports, for `/devops classify` written under it.
        ctx.redis.set(thread_key(pipe.project, kind, iid), thread, ex=90 * 86400)
        # The cause labels we put on this target before, so stale ones go without reading it.
        ours_key = f"da:labelled:{pipe.project}:{kind}:{iid}"
        before = {m.decode() for m in ctx.redis.smembers(ours_key)}
        now = set() if passed else {*category_labels, *rule_labels}
        if passed:
            gitlab.relabel(pipe.project, kind, iid, add=[settings.label_passed],
                           remove=sorted({settings.label_failed, *before}))
        else:
            gitlab.relabel(pipe.project, kind, iid, add=[settings.label_failed, *sorted(now)],
                           remove=sorted({settings.label_passed, *(before - now)}))
        pipe_ = ctx.redis.pipeline(transaction=True)
        pipe_.delete(ours_key)
        if now:
            pipe_.sadd(ours_key, *now)
            pipe_.expire(ours_key, 90 * 86400)
        pipe_.execute()
        ctx.decide("comment", target=f"{kind}:{iid}", outcome=outcome, passed=passed)


def thread_key(project: int, kind: str, iid: int) -> str:
    return f"da:ci-thread:{project}:{kind}:{iid}"


def thread_pipeline(redis: Any, project: int, kind: str, iid: int) -> tuple[PipelineRef, bool] | None:
    """The pipeline the CI comment in this issue or MR reports, and whether a later one passed."""
    raw = redis.get(thread_key(project, kind, iid))
    if raw is None:
        return None
    data = orjson.loads(raw)
    passed = bool(data.pop("passed", False))
    return PipelineRef(**data), passed


def _line(text: Any, limit: int) -> str:
    """One line of our own text (its code spans kept), bounded."""
    out = str(text or "").replace("\r", " ").replace("\n", " ")
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _cell(text: Any, limit: int = 120) -> str:
    """Markdown-table-safe: no pipes or newlines, backticks neutralised, bounded length."""
    s = str(text or "").replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    s = s.replace("`", "'")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _why(row: dict[str, Any]) -> str:
    """The layer that decided, in a table cell: which rule, or what the inference rests on."""
    layer, rule = row.get("layer", "rules"), row.get("rule")
    if layer == "rules":
        return f"rule `{_cell(rule, 40)}`"
    if layer == "gitlab":
        return "GitLab's job fields" + (f", rule `{_cell(rule, 40)}`" if rule and rule != "none" else "")
    if layer == "context":
        return "inferred from " + (f"`$ {_cell(row.get('command'), 50)}`" if row.get("command")
                                   else "the job and stage names")
    if layer == "learned":
        return "corrected by a person"
    return "no rule matched"


def _lines_cell(row: dict[str, Any], limit: int = 3) -> str:
    """The lines that decided, then the likely failing lines: what a person should read first."""
    shown: list[str] = []
    numbers: set[int] = set()
    for e in [*(row.get("evidence") or []), *(row.get("error_lines") or [])]:
        if e["line"] in numbers or len(shown) >= limit:
            continue
        numbers.add(e["line"])
        shown.append(f"L{e['line']}: `{_cell(e['text'], 100)}`")
    if not shown:
        return _cell(row.get("failure_reason") or "the log was empty")
    return "<br>".join(shown)


def render(pipe: PipelineRef, rows: list[dict[str, Any]], *, passed: bool,
           failed_pipeline: int | None, flaky_jobs: dict[str, int],
           flaky_tests: dict[str, int], similar: dict[str, str] | None = None,
           fixes: dict[str, str] | None = None) -> str:
    sha = (pipe.sha or "")[:8]
    similar = similar or {}
    fixes = fixes or {}
    if passed:
        head = (f"### ✅ Pipeline #{pipe.pipeline} passed for `{_cell(pipe.ref, 80)}` ({sha})\n\n"
                f"It replaces failed pipeline #{failed_pipeline}; what was found there:\n")
    else:
        head = f"### ❌ Pipeline #{pipe.pipeline} failed for `{_cell(pipe.ref, 80)}` ({sha})\n"
    lines = [head, "| Job | Stage | Category | Why | Lines to read first | What devops-agent did |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        name = _cell(row["name"], 60) + (" (flaky)" if row["name"] in flaky_jobs else "")
        category = f"{row['category']} ({row.get('confidence', 'high')})"
        lines.append(f"| {name} | {_cell(row.get('stage'), 30)} | {category} | {_why(row)} | "
                     f"{_lines_cell(row)} | {_cell(row['action'], 140)} |")
    details = []
    for r in rows:
        said = [f"{_line(r.get('why'), 300)}."] if r.get("why") else []
        if similar.get(r["name"]):
            sentence = _line(similar[r["name"]], 300)
            said.append(sentence[:1].upper() + sentence[1:] + ".")
        if fixes.get(r["name"]):
            # Our own sentence (its link included), not log text: kept whole, one line.
            said.append(_line(fixes[r["name"]], 700) + ".")
        if r.get("next_steps") and not passed:
            said.append(_cell(r["next_steps"], 400))
        if said:
            details.append(f"- **{_cell(r['name'], 60)}** ({r['category']}): " + " ".join(said))
    if details:
        lines += ["", "**Why, and what next**" if not passed else "**Why**", *details]
    known_flaky = [f"`{_cell(n, 80)}` ({c}×)" for n, c in sorted(flaky_jobs.items())
                   if any(r["name"] == n for r in rows)]
    tests = [f"`{_cell(n, 100)}` ({c}×)" for n, c in sorted(flaky_tests.items())][:10]
    if known_flaky:
        lines += ["", "Flaky jobs (failed, then passed on retry for the same commit): "
                  + ", ".join(known_flaky)]
    if tests:
        lines += ["", "Flaky tests in this project: " + ", ".join(tests)]
    if not passed:
        lines += ["", "<sub>Wrong category? Answer `/devops classify <category> [job]` and "
                      "devops-agent will remember it for failures like this one.</sub>"]
    lines += ["", "<sub>devops-agent edits this comment as later pipelines for this ref "
                  "finish.</sub>"]
    return "\n".join(lines)


def refresh_comment(ctx: Any, pipe_fields: dict[str, Any]) -> str:
    """Edit the failure comment of the pipeline that asked for the fix, so it links the merge
    request; only while that pipeline is still the ref's latest and failed (a later pipeline's
    comment says what is current)."""
    pipe = PipelineRef(**pipe_fields)
    store = Store(ctx.redis)
    state = store.ref_state(pipe.project, pipe.ref)
    if not state or state.get("pipeline") != pipe.pipeline or state.get("status") != "failed":
        return "comment left: a later pipeline reports on this ref"
    explain(ctx, store, pipe, passed=False)
    return "comment refreshed"
