"""Comment commands (Note Hook): `/devops deploy staging`, `/devops rollback production`, ..."""

from __future__ import annotations

import logging

from tasks.chatops.core import COMMANDS, Invocation, load_commands
from tasks.chatops.parse import parse_commands
from tasks.handlers import HelpRecord, handler
from tasks.store import Store
from tasks.triage import not_actionable

HELP = HelpRecord(
    description="Runs commands written at the start of a line in issue and merge request "
                "comments (default prefix /devops). Quoted lines, code blocks and edited notes "
                "never run a command; each command is checked against the environment's gates, "
                "answered in one reply that is edited as it progresses, and audited.",
    config="DEVOPS_AGENT_CONFIG: chatops.prefix, access.<env>",
)
log = logging.getLogger("devops_agent.chatops")
NOTEABLE = {"Issue": "issue", "MergeRequest": "mr"}


def bot_username(ctx) -> str | None:
    configured = ctx.config.chatops.bot_username or ctx.settings.bot_username
    if configured:
        return configured
    cached = ctx.redis.get("da:bot-username")
    if cached is not None:
        return cached.decode()
    name = ctx.gitlab.current_user().get("username")
    if name:
        ctx.redis.set("da:bot-username", name, ex=3600)
    return name


@handler("chatops", kinds=("note",), help=HELP)
def handle(event, ctx):
    note = event.object_attributes
    if note.action == "update":
        return ctx.decide("skip", reason="edited note: commands run only on new notes")
    if note.system:
        return ctx.decide("skip", reason="system note")
    kind = NOTEABLE.get(note.noteable_type)
    target = event.issue if kind == "issue" else event.merge_request
    if kind is None or target is None:
        return ctx.decide("skip", reason=f"comment on a {note.noteable_type}")
    commands = parse_commands(note.note, ctx.config.chatops.prefix)
    if not commands:
        return ctx.decide("skip", reason="no command")
    reason = not_actionable(ctx, event.project.id, event.project.path_with_namespace)
    if reason:
        return ctx.decide("ignored", reason=reason)
    if event.user.username and event.user.username == bot_username(ctx):
        return ctx.decide("skip", reason="the bot's own note")
    store = Store(ctx.redis)
    if store.once(f"eyes:{event.project.id}:{note.id}"):
        from tasks.adapters.gitlab import GitLabError

        try:  # only an acknowledgement: never let it stop the command
            ctx.gitlab.award_emoji(event.project.id, kind, target.iid, note.id, "eyes")
        except GitLabError as exc:
            log.warning("could not award 👀 on note %s: %s", note.id, exc)
    load_commands()
    for index, cmd in enumerate(commands):
        once = f"note-cmd:{event.project.id}:{note.id}:{index}"
        if not store.once(once):
            continue  # this note was delivered before: its commands already ran
        inv = Invocation(
            ctx=ctx, config=ctx.config, project=event.project.id,
            project_path=event.project.path_with_namespace,
            default_branch=event.project.default_branch, kind=kind, iid=target.iid,
            user_id=event.user.id or 0, username=event.user.username, name=cmd.name,
            args=cmd.args, line=cmd.line, subject=f"cmd:{note.id}:{index}",
            mr_source_branch=target.source_branch if kind == "mr" else None)
        try:
            if cmd.error:
                inv.reply(f"❌ {cmd.error}")
                outcome = "bad arguments"
            elif cmd.name not in COMMANDS:
                known = ", ".join(sorted(COMMANDS))
                inv.reply(f"❓ unknown command `{cmd.name or '(none)'}`. Commands: {known}. "
                          f"`{ctx.config.chatops.prefix} help` explains them.")
                inv.audit("unknown command")
                outcome = "unknown"
            else:
                outcome = COMMANDS[cmd.name].fn(inv)
        except Exception:
            store.forget(once)  # let the redelivery run it; each step inside is idempotent
            raise
        ctx.decide("command", command=cmd.name, outcome=outcome, note=note.id)
