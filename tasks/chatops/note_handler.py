"""Comment commands (Note Hook): `/devops deploy staging`, `/devops rollback production`, ..."""

from __future__ import annotations

import logging

from tasks.chatops.core import COMMANDS, Invocation, load_commands
from tasks.ci.triage import not_actionable
from tasks.gitlab.client import GitLabError, NotFound
from tasks.gitlab.facts import note_facts, noteable_facts
from tasks.gitlab.note_commands import MAX_COMMANDS_PER_NOTE, parse_commands, parse_note
from tasks.platform.handlers import HelpRecord, handler
from tasks.platform.store import Store

HELP = HelpRecord(
    description="Runs commands written at the start of a line in issue and merge request "
                "comments (default prefix /devops). Quoted lines, code blocks and edited notes "
                "never run a command; each command is checked against the environment's gates, "
                "answered in one reply that is edited as it progresses, and audited.",
    config="DEVOPS_AGENT_CONFIG: chatops.prefix, access.<env>",
)
log = logging.getLogger("devops_agent.chatops")
NOTEABLE = {"Issue": "issue", "MergeRequest": "mr"}


def note_checked_key(project: int, note: int) -> str:
    """Marked on the first look at a note; the reconciler skips it."""
    return f"note-checked:{project}:{note}"


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
    hint = event.object_attributes
    kind = NOTEABLE.get(hint.noteable_type)
    target = event.issue if kind == "issue" else event.merge_request
    if kind is None or target is None:
        return ctx.decide("skip", reason=f"comment on a {hint.noteable_type}")
    prefix = ctx.config.chatops.prefix
    # The body is a hint: a note without a command in it is not worth an API call. Everything
    # acted on below comes from GitLab's API.
    if hint.action == "update" or not parse_commands(hint.note, prefix):
        return ctx.decide("skip", reason="no command" if hint.action != "update"
                          else "edited note: commands run only on new notes")
    project = event.project.id
    reason = not_actionable(ctx, project, event.project.path_with_namespace)
    if reason:
        return ctx.decide("ignored", reason=reason)
    try:
        note = note_facts(ctx.gitlab, project, kind, target.iid, hint.id)
    except NotFound:
        return ctx.decide("skip", reason=f"GitLab has no note {hint.id} on {kind} {target.iid}")
    store = Store(ctx.redis)
    seen = note_checked_key(project, note.id)
    if note.system:
        return ctx.decide("skip", reason="system note")
    # An edit re-sends the hook, with or without `action`; GitLab's own timestamps tell. Only
    # the first look counts: our 👀 and replies may touch the note before a retried delivery.
    if note.edited and not store.seen(seen):
        return ctx.decide("skip", reason="edited note: commands run only on new notes")
    store.mark(seen)
    if note.author == bot_username(ctx):
        return ctx.decide("skip", reason="the bot's own note")
    parsed = parse_note(note.body, prefix)
    if not parsed.commands:
        return ctx.decide("skip", reason="no command in the note GitLab has")
    noteable = noteable_facts(ctx.gitlab, project, kind, target.iid)
    if store.once(f"eyes:{project}:{note.id}"):
        try:  # only an acknowledgement: never let it stop the command
            ctx.gitlab.award_emoji(project, kind, target.iid, note.id, "eyes")
        except GitLabError as exc:
            log.warning("could not award 👀 on note %s: %s", note.id, exc)
    load_commands()
    facts = ctx.project
    for index, cmd in enumerate(parsed.commands):
        once = f"note-cmd:{project}:{note.id}:{index}"
        if not store.once(once):
            continue  # this note was delivered before: its commands already ran
        inv = Invocation(
            ctx=ctx, config=ctx.config, project=project, project_path=facts.path,
            default_branch=facts.default_branch, kind=kind, iid=target.iid,
            user_id=note.author_id, username=note.author, name=cmd.name,
            args=cmd.args, line=cmd.line, subject=f"cmd:{note.id}:{index}",
            mr_source_branch=noteable.source_branch if kind == "mr" else None,
            noteable=noteable)
        try:
            if not noteable.open:
                inv.reply(f"❌ this {'issue' if kind == 'issue' else 'merge request'} is "
                          f"{noteable.state}: commands run only on open ones"
                          + (f" (none of this note's {len(parsed.commands)} commands ran)."
                             if len(parsed.commands) > 1 else "."))
                inv.audit("refused", reason=f"noteable {noteable.state}")
                ctx.decide("command", command=cmd.name, outcome="refused: closed", note=note.id)
                break  # one answer for the note
            if cmd.error:
                inv.reply(f"❌ {cmd.error}")
                outcome = "bad arguments"
            elif cmd.name not in COMMANDS:
                known = ", ".join(sorted(COMMANDS))
                inv.reply(f"❓ unknown command `{cmd.name or '(none)'}`. Commands: {known}. "
                          f"`{prefix} help` explains them.")
                inv.audit("unknown command")
                outcome = "unknown"
            else:
                outcome = COMMANDS[cmd.name].fn(inv)
            if parsed.dropped and index == len(parsed.commands) - 1 and \
                    store.once(f"note-cap:{project}:{note.id}"):
                ctx.gitlab.create_note(project, kind, target.iid,
                                       f"@{note.author} {parsed.dropped} more command(s) in this "
                                       f"note were not run: at most {MAX_COMMANDS_PER_NOTE} "
                                       "commands run per note.")
        except Exception:
            store.forget(once)  # let the redelivery run it; each step inside is idempotent
            raise
        ctx.decide("command", command=cmd.name, outcome=outcome, note=note.id)
