"""Which issues a pipeline is about: the MR's closing issues, the branch's issue number, and
`Closes/Fixes/Related #N` in the MR description or commit message; else the MR itself."""

from __future__ import annotations

import re
from typing import Any

# GitLab names branches created from an issue "<iid>-<slug>".
BRANCH_ISSUE = re.compile(r"^(\d+)-")
# GitLab's default closing pattern, plus "Related to" which we also treat as a link.
MENTION = re.compile(
    r"\b(?:clos(?:e|es|ed|ing)|fix(?:|es|ed|ing)|resolv(?:e|es|ed|ing)|implement(?:|s|ed|ing)"
    r"|related(?:\s+to)?|refs?)\b:?\s+((?:#\d+(?:\s*,\s*|\s+and\s+|\s+)?)+)", re.IGNORECASE)
MR_REF = re.compile(r"^refs/merge-requests/(\d+)/(?:head|merge|train)$")


def mentioned_issues(text: str | None) -> list[int]:
    out: list[int] = []
    for match in MENTION.finditer(text or ""):
        out.extend(int(n) for n in re.findall(r"#(\d+)", match.group(1)))
    return out


def mr_iid_from_ref(ref: str | None) -> int | None:
    m = MR_REF.match(ref or "")
    return int(m.group(1)) if m else None


def linked_targets(gitlab: Any, project: int, *, ref: str | None, mr_iid: int | None,
                   commit_message: str | None = None) -> list[tuple[str, int]]:
    """[("issue", iid), ...] or [("mr", iid)] when nothing is linked; [] when neither exists."""
    from tasks.adapters.gitlab import NotFound

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
    issues: list[tuple[str, int]] = []
    for iid in dict.fromkeys(candidates):
        try:
            issue = gitlab.get_issue(project, iid)
        except NotFound:
            continue
        if issue.get("state", "opened") == "opened":
            issues.append(("issue", iid))
    if issues:
        return issues
    return [("mr", mr_iid)] if mr_iid is not None else []
