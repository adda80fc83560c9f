"""Swapping the `ci-failure:<category>` label on an issue or MR corrects the verdict."""

from __future__ import annotations

from tasks.ci.learning import apply_correction, failed_rows
from tasks.ci.report import thread_pipeline
from tasks.ci.rules.table import CATEGORIES
from tasks.ci.triage import not_actionable
from tasks.config.agent import ACCESS_LEVELS
from tasks.deploy.gates import access_level
from tasks.platform.handlers import HelpRecord, handler
from tasks.platform.store import Store

HELP = HelpRecord(
    description="Replacing a `ci-failure:<category>` label that devops-agent set with another "
                "one (by someone with Developer access) corrects the failed job's category, as "
                "`/devops classify` does; devops-agent's own label changes are ignored.",
    config="LABEL_CATEGORY_PREFIX",
)


@handler("classify_labels", kinds=("issue", "merge_request"), help=HELP)
def handle(event, ctx):
    change = event.changes.labels
    if change is None:
        return ctx.decide("skip", reason="no label change")
    prefix = ctx.settings.label_category_prefix
    before = {lab.title for lab in change.previous}
    after = {lab.title for lab in change.current}
    added = sorted(t[len(prefix):] for t in after - before if t.startswith(prefix))
    removed = sorted(t[len(prefix):] for t in before - after if t.startswith(prefix))
    if len(added) != 1 or not removed or added[0] not in CATEGORIES:
        return ctx.decide("skip", reason="not a category label swap")
    reason = not_actionable(ctx, event.project.id, event.project.path_with_namespace)
    if reason:
        return ctx.decide("ignored", reason=reason)
    kind = "issue" if event.kind == "issue" else "mr"
    iid = event.object_attributes.iid
    label = prefix + added[0]
    # Who added it, from GitLab's own record, not from the hook's `user`.
    adds = [e for e in ctx.gitlab.label_events(event.project.id, kind, iid)
            if e.get("action") == "add" and (e.get("label") or {}).get("name") == label]
    if not adds:
        return ctx.decide("skip", reason=f"GitLab has no record of {label} being added")
    actor = adds[-1].get("user") or {}
    bot = ctx.gitlab.current_user().get("id")
    if actor.get("id") == bot:
        return ctx.decide("skip", reason="devops-agent's own label change")
    if access_level(ctx.gitlab, ctx.redis, event.project.id, int(actor.get("id") or 0)) \
            < ACCESS_LEVELS["developer"]:
        return ctx.decide("refused", reason="the label was added by someone without Developer access")
    found = thread_pipeline(ctx.redis, event.project.id, kind, iid)
    if found is None:
        return ctx.decide("skip", reason="no pipeline reported in this thread")
    pipe, passed_since = found
    store = Store(ctx.redis)
    rows = [r for r in failed_rows(store, pipe) if r["category"] in removed]
    where = f"{event.project.path_with_namespace or event.project.id}{'!' if kind == 'mr' else '#'}{iid}"
    for row in rows[:20]:
        if not store.once(f"label-correction:{pipe.project}:{row['job_id']}:{added[0]}"):
            continue
        apply_correction(ctx, pipe, row, added[0], by=actor.get("username") or "?",
                         user_id=int(actor.get("id") or 0), where=where,
                         still_failing=not passed_since)
    return ctx.decide("label-correction", category=added[0], jobs=[r["job_id"] for r in rows[:20]])
