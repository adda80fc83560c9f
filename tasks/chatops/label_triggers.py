"""Label triggers: `deploy::<env>` / `rollback::<env>` added to an issue or MR start that action."""

from __future__ import annotations

from tasks.chatops.core import Invocation, request_action
from tasks.ci.triage import not_actionable
from tasks.gitlab.client import NotFound
from tasks.gitlab.facts import label_added_by, noteable_facts
from tasks.platform.handlers import HelpRecord, handler
from tasks.platform.store import Store

HELP = HelpRecord(
    description="Adding the label deploy::<env> or rollback::<env> to an issue or merge request "
                "deploys or rolls back that environment, after the same gates as the commands, "
                "checked for the person who added the label; the label then moves to "
                "env::<env>::deploying and on to env::<env>::deployed or env::<env>::deploy-failed.",
    config="DEVOPS_AGENT_CONFIG: labels.*, access.<env>",
)


# A person adds a label or two; a body naming dozens is not a person, and each costs API calls.
MAX_TRIGGERS_PER_EVENT = 3


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
        return ctx.decide("skip", reason="no trigger label added", labels=added[:20])
    project = event.project.id
    reason = not_actionable(ctx, project, event.project.path_with_namespace)
    if reason:
        return ctx.decide("ignored", reason=reason)
    kind = "issue" if event.kind == "issue" else "mr"
    iid = event.object_attributes.iid
    try:
        noteable = noteable_facts(ctx.gitlab, project, kind, iid)
    except NotFound:
        return ctx.decide("skip", reason=f"GitLab has no {kind} {iid} in this project")
    store = Store(ctx.redis)
    facts = ctx.project
    for action, env, label in triggers[:MAX_TRIGGERS_PER_EVENT]:
        # Who added it, and whether it is still there, from GitLab's own records: the hook's
        # `user` and `changes` can be forged or stale.
        found = label_added_by(ctx.gitlab, project, kind, iid, label)
        if found is None:
            ctx.decide("skip", reason=f"GitLab has no addition of {label}")
            continue
        actor, event_id, removed = found
        started = f"label-started:{project}:{kind}:{iid}:{label}:{event_id}"
        # A label taken off again was not added; unless it is our own work in progress: acting
        # on it moves the label, and a retry after a failed write must finish the job.
        if (removed or label not in noteable.labels) and not store.seen(started):
            ctx.decide("skip", reason=f"GitLab has no current addition of {label}")
            continue
        if not store.once(f"label:{project}:{kind}:{iid}:{label}:{event_id}"):
            continue  # this very addition was handled before
        store.mark(started)
        inv = Invocation(
            ctx=ctx, config=ctx.config, project=project, project_path=facts.path,
            default_branch=facts.default_branch, kind=kind, iid=iid,
            user_id=int(actor.get("id") or 0), username=actor.get("username"), name=action,
            args=(env,), line=f'label ~"{label}" added', subject=f"label:{label}:{event_id}",
            mr_source_branch=noteable.source_branch if kind == "mr" else None,
            trigger_label=label, noteable=noteable)
        if not noteable.open:
            inv.reply(f"❌ this {'issue' if kind == 'issue' else 'merge request'} is "
                      f"{noteable.state}: labels trigger nothing on closed ones.")
            inv.audit("refused", reason=f"noteable {noteable.state}")
            ctx.decide("label-trigger", label=label, outcome="refused: closed")
            continue
        try:
            outcome = request_action(inv, action, env)
        except Exception:
            # Nothing was acted on for sure: let the redelivery run this trigger again (each
            # step inside is idempotent), as the note path does.
            store.forget(f"label:{project}:{kind}:{iid}:{label}:{event_id}")
            raise
        ctx.decide("label-trigger", label=label, outcome=outcome)
    if len(triggers) > MAX_TRIGGERS_PER_EVENT:
        ctx.decide("capped", reason=f"{len(triggers)} trigger labels in one event; "
                                    f"at most {MAX_TRIGGERS_PER_EVENT} are acted on")
