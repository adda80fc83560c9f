"""Label triggers: `deploy::<env>` / `rollback::<env>` added to an issue or MR start that action."""

from __future__ import annotations

from tasks.chatops.core import Invocation, request_action
from tasks.handlers import HelpRecord, handler
from tasks.store import Store
from tasks.triage import not_actionable

HELP = HelpRecord(
    description="Adding the label deploy::<env> or rollback::<env> to an issue or merge request "
                "deploys or rolls back that environment, after the same gates as the commands, "
                "checked for the person who added the label; the label then moves to "
                "deploying::<env> and on to deployed::<env> or deploy-failed::<env>.",
    config="DEVOPS_AGENT_CONFIG: labels.*, access.<env>",
)


@handler("label_triggers", kinds=("issue", "merge_request"), help=HELP)
def handle(event, ctx):
    added = event.changes.labels.added() if event.changes.labels else []
    if not added:
        return ctx.decide("skip", reason="no label added")
    labels = ctx.config.labels
    triggers = []
    for label in added:
        for action, which in (("deploy", "deploy"), ("rollback", "rollback")):
            m = labels.pattern(which).match(label)
            if m:
                triggers.append((action, m.group(1), label))
    if not triggers:
        return ctx.decide("skip", reason="no trigger label added", labels=added)
    reason = not_actionable(ctx, event.project.id, event.project.path_with_namespace)
    if reason or event.user is None:
        return ctx.decide("ignored", reason=reason or "no user in the hook")
    kind = "issue" if event.kind == "issue" else "mr"
    attrs = event.object_attributes
    store = Store(ctx.redis)
    for action, env, label in triggers:
        stamp = attrs.updated_at or ""
        if not store.once(f"label:{event.project.id}:{kind}:{attrs.iid}:{label}:{stamp}"):
            continue
        inv = Invocation(
            ctx=ctx, config=ctx.config, project=event.project.id,
            project_path=event.project.path_with_namespace,
            default_branch=event.project.default_branch, kind=kind, iid=attrs.iid,
            user_id=event.user.id or 0, username=event.user.username, name=action,
            args=(env,), line=f'label ~"{label}" added', subject=f"label:{label}:{stamp}",
            mr_source_branch=getattr(attrs, "source_branch", None), trigger_label=label)
        outcome = request_action(inv, action, env)
        ctx.decide("label-trigger", label=label, outcome=outcome)
