"""Comment commands (Note Hook): `/devops deploy staging`, `/devops rollback production`, ..."""

from __future__ import annotations

from tasks.handlers import HelpRecord, handler

HELP = HelpRecord(description="Runs commands written in issue and merge request comments.")


@handler("chatops", kinds=("note",), help=HELP)
def handle(event, ctx):
    note = event.object_attributes
    if note.action == "update":
        return ctx.decide("skip", reason="edited note: commands run only on new notes")
    return ctx.decide("note", note=note.id, noteable=note.noteable_type)
