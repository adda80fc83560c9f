"""Which issues a pipeline is about: the MR's closing issues, the branch's issue number, and
`Closes/Fixes/Related #N` in the MR description or commit message; else the MR itself."""

from __future__ import annotations

import re
from typing import Any

from tasks.gitlab.client import NotFound

# GitLab names branches created from an issue "<iid>-<slug>".
BRANCH_ISSUE = re.compile(r"^(\d+)-")
# GitLab's default closing pattern, plus "Related to" which we also treat as a link.
MENTION = re.compile(
    r"\b(?:clos(?:e|es|ed|ing)|fix(?:|es|ed|ing)|resolv(?:e|es|ed|ing)|implement(?:|s|ed|ing)"
    r"|related(?:\s+to)?|refs?)\b:?\s+((?:#\d+(?:\s*,\s*|\s+and\s+|\s+)?)+)", re.IGNORECASE)
MR_REF = re.compile(r"^refs/merge-requests/(\d+)/(?:head|merge|train)$")
# Issues commented on per pipeline: a description or commit message naming thousands of
# issues must not become thousands of API calls and comments.
MAX_LINKED_ISSUES = 10
# Mentions read from one text at all (the rest is not even parsed).
MAX_MENTIONS = 100


def mentioned_issues(text: str | None) -> list[int]:
    out: list[int] = []
    for match in MENTION.finditer((text or "")[:20_000]):
        out.extend(int(n) for n in re.findall(r"#(\d{1,9})\b", match.group(1)))
        if len(out) >= MAX_MENTIONS:
            return out[:MAX_MENTIONS]
    return out


def mr_iid_from_ref(ref: str | None) -> int | None:
    m = MR_REF.match(ref or "")
    return int(m.group(1)) if m else None


def linked_targets(gitlab: Any, project: int, *, ref: str | None, mr_iid: int | None,
                   commit_message: str | None = None) -> list[tuple[str, int]]:
    """[("issue", iid), ...] or [("mr", iid)] when nothing is linked; [] when neither exists.
    At most MAX_LINKED_ISSUES issues; `linked_overflow()` counts the ones left out."""
    return linked(gitlab, project, ref=ref, mr_iid=mr_iid, commit_message=commit_message)[0]


def linked(gitlab: Any, project: int, *, ref: str | None, mr_iid: int | None,
           commit_message: str | None = None) -> tuple[list[tuple[str, int]], int]:
    """(targets, how many more linked issues were left out by MAX_LINKED_ISSUES)."""

    mr_iid = mr_iid or mr_iid_from_ref(ref)
    candidates: list[int] = []
    source_branch = ref
    if mr_iid is not None:
        try:
            candidates += [int(i["iid"]) for i in gitlab.mr_closes_issues(project, mr_iid)]
            mr = gitlab.get_mr(project, mr_iid)
            candidates += mentioned_issues(mr.get("description"))
            source_branch = mr.get("source_branch") or ref
        except NotFound:
            mr_iid = None
    m = BRANCH_ISSUE.match(source_branch or "")
    if m:
        candidates.append(int(m.group(1)))
    candidates += mentioned_issues(commit_message)
    unique = list(dict.fromkeys(candidates))
    overflow = max(0, len(unique) - MAX_LINKED_ISSUES)
    issues: list[tuple[str, int]] = []
    for iid in unique[:MAX_LINKED_ISSUES]:
        try:
            issue = gitlab.get_issue(project, iid)
        except NotFound:
            continue
        if issue.get("state", "opened") == "opened":
            issues.append(("issue", iid))
    if issues:
        return issues, overflow
    return ([("mr", mr_iid)] if mr_iid is not None else []), overflow
