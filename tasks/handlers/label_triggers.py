"""Label triggers: `deploy::<env>` / `rollback::<env>` added to an issue or MR start that action."""

from __future__ import annotations

from tasks.handlers import HelpRecord, handler

HELP = HelpRecord(
    description="Adding the label deploy::<env> or rollback::<env> to an issue or merge request "
                "deploys or rolls back that environment, after the same permission checks as the "
                "commands; the label then moves through deploying:: to deployed:: or deploy-failed::.",
)


@handler("label_triggers", kinds=("issue", "merge_request"), help=HELP)
def handle(event, ctx):
    added = event.changes.labels.added() if event.changes.labels else []
    if not added:
        return ctx.decide("skip", reason="no label added")
    return ctx.decide("labels-added", labels=added)
