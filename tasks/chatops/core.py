"""Running ChatOps commands and label triggers: parse, check, act, reply, audit.

Commands register here, one module each under tasks/chatops/commands/, with a help record that
feeds `/devops help` and the README's command table.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasks.config.agent import AgentConfig
from tasks.deploy.gates import evaluate
from tasks.deploy.requests import DeployRequest, Ticket
from tasks.deploy.thread_status import conclude, in_progress, progress, status_lock  # noqa: F401
from tasks.deploy.verdicts import verdict
from tasks.gitlab.comments import upsert_comment
from tasks.gitlab.replies import reply_body
from tasks.platform import audit
from tasks.platform.handlers import CommandHelp
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.chatops")

COMMAND_MODULES = ("deploy", "checklist", "approve", "rollback", "promote", "retry", "classify",
                   "status", "lock", "plan", "apply", "help")


@dataclass(frozen=True)
class ChatCommand:
    name: str
    fn: Callable[[Invocation], str]
    help: CommandHelp


COMMANDS: dict[str, ChatCommand] = {}


def command(name: str, help: CommandHelp) -> Callable:
    def wrap(fn: Callable[[Invocation], str]) -> Callable[[Invocation], str]:
        COMMANDS[name] = ChatCommand(name, fn, help)
        return fn
    return wrap


def load_commands() -> dict[str, ChatCommand]:
    for name in COMMAND_MODULES:
        importlib.import_module(f"tasks.chatops.commands.{name}")
    return COMMANDS


@dataclass
class Invocation:
    """One command (or label trigger) in flight: who asked, where, and how to answer."""

    ctx: Any  # HandlerContext: settings, redis, gitlab, deployer, decide()
    config: AgentConfig
    project: int
    project_path: str | None
    default_branch: str | None
    kind: str  # "issue" or "mr" — where the command was written
    iid: int
    user_id: int
    username: str | None
    name: str
    args: tuple[str, ...]
    line: str
    subject: str  # the reply comment's subject
    mr_source_branch: str | None = None
    trigger_label: str | None = None
    # The issue or MR as GitLab has it (tasks/facts.NoteableFacts), when read.
    noteable: Any = None
    audit_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return Store(self.ctx.redis)

    def reply(self, text: str) -> str:
        """The one reply to this command, quoting it, edited in place as things progress."""
        return upsert_comment(self.ctx.gitlab, self.store, self.project, self.kind, self.iid,
                              self.subject, reply_body(self.line, self.username, text))

    def audit(self, outcome: str, **details: Any) -> None:
        audit.record(self.ctx.redis, project=self.project, project_path=self.project_path,
                     where=f"{self.kind}:{self.iid}", user=self.username, user_id=self.user_id,
                     command=self.line or self.trigger_label, action=self.name,
                     outcome=outcome, **self.audit_extra, **details)

    def default_ref(self) -> str | None:
        return self.mr_source_branch or self.default_branch




def split_force(args: tuple[str, ...]) -> tuple[tuple[str, ...], str | None, str | None]:
    """(args without --force, reason or None, error or None)."""
    if "--force" not in args:
        return args, None, None
    i = args.index("--force")
    if i + 1 >= len(args):
        return args[:i], None, '--force needs a written reason: --force "why"'
    return args[:i] + args[i + 2:], args[i + 1], None


def request_action(inv: Invocation, action: str, env: str, *, ref: str | None = None,
                   revision: str | None = None, force_reason: str | None = None,
                   dry_run: bool = False) -> str:
    """Gate, audit and submit a deploy, rollback or promote; reply and flip labels. With
    `dry_run`, answer with the whole checklist and change nothing."""
    refused = verdict(action, "refused")
    access = inv.config.env_access(env)
    if access is None:
        known = ", ".join(sorted(inv.config.access)) or "none"
        inv.audit("refused", env=env, reason="unknown environment")
        inv.reply(f"❌ unknown environment `{env}`. Known: {known}.")
        return "refused: unknown environment"
    target = inv.config.environments.get(env)
    if target is None and not dry_run:
        # No test double stands in for a cluster: nothing can be deployed, so nothing is claimed.
        inv.audit("refused", env=env, reason="no target configured")
        inv.reply(f"{refused.emoji} no target configured for `{env}`: nothing was deployed. Add "
                  f"`environments.{env}` (the Kubernetes Deployment to update) to "
                  "DEVOPS_AGENT_CONFIG.")
        if inv.trigger_label:
            inv.ctx.gitlab.remove_labels(inv.project, inv.kind, inv.iid, [inv.trigger_label])
        inv.ctx.decide("refused", env=env, gate="target")
        return "refused: no target"
    # Only a deploy ships a ref; a rollback returns to a revision and a promote lets a running
    # deploy go on, so neither names a branch.
    ref = (ref or inv.default_ref()) if action == "deploy" else None
    decision = evaluate(inv.ctx.gitlab, inv.ctx.redis, access, project=inv.project, env=env,
                        ref=ref, user_id=inv.user_id, username=inv.username,
                        force_reason=force_reason, action=action, noteable=inv.noteable,
                        history=inv.ctx.deployer, env_config=target,
                        prefix=inv.config.chatops.prefix, checklist=dry_run)
    gate_log = [g.as_dict() for g in decision.gates]
    checked = decision.checked
    if dry_run:
        what = f" `{checked.ref}` at {checked.sha[:8]} (pipeline #{checked.pipeline})" if checked else ""
        allowed = "would be allowed" if decision.allowed else "would be refused"
        inv.audit("dry-run", env=env, ref=ref, gates=gate_log, allowed=decision.allowed)
        inv.reply(f"📋 checklist for `{action} {env}`{what}: {allowed}; nothing was deployed."
                  + ("" if target is not None else f" (`{env}` has no target configured, so a "
                     "real deploy would be refused.)") + "\n\n" + decision.checklist())
        return "dry-run"
    if not decision.allowed:
        refusing = decision.refusing()
        assert refusing is not None
        inv.audit("refused", env=env, ref=ref, gates=gate_log, forced=force_reason is not None)
        inv.reply(f"{refused.emoji} `{action} {env}` refused by the **{refusing.name}** gate: "
                  f"{refusing.detail}")
        if inv.trigger_label:
            inv.ctx.gitlab.remove_labels(inv.project, inv.kind, inv.iid, [inv.trigger_label])
        inv.ctx.decide("refused", env=env, gate=refusing.name)
        return f"refused: {refusing.name}"
    # Exactly what the gates checked ships: never a second read of the ref.
    sha = checked.sha if action == "deploy" and checked else None
    at = f" `{ref}` at {sha[:8]}" if sha and ref else ""
    inv.reply(f"⏳ {action} of `{env}`{at} queued.")
    request = DeployRequest(project=inv.project, env=env, action=action, ref=ref, sha=sha,
                            revision=revision, requested_by=inv.username, reason=force_reason,
                            force=force_reason is not None,
                            reply_to=(inv.kind, inv.iid, inv.subject),
                            trigger_label=inv.trigger_label, command_line=inv.line,
                            request_id=f"{inv.project}:{inv.kind}:{inv.iid}:{inv.subject}")
    ticket: Ticket = inv.ctx.deployer.submit(request)
    inv.audit(ticket.status, env=env, ref=ref, sha=sha, gates=gate_log, revision=revision,
              pipeline=checked.pipeline if checked else None, forced=force_reason is not None,
              deploy_id=ticket.deploy_id, detail=ticket.detail)
    if ticket.status in ("queued", "running"):
        deployer = inv.ctx.deployer
        in_progress(inv.ctx.gitlab, inv.ctx.redis, inv.config, inv.project, inv.kind, inv.iid,
                    env, f"{action} of `{env}` is {ticket.status}: {ticket.detail}", inv.reply,
                    still_running=lambda: bool(ticket.deploy_id) and deployer.active(ticket.deploy_id),
                    trigger_label=inv.trigger_label)
    else:
        done = verdict(action, ticket.status)
        conclude(inv.ctx.gitlab, inv.ctx.redis, inv.config, inv.project, inv.kind, inv.iid, env,
                 done, done.text(env, ticket.detail), inv.reply, trigger_label=inv.trigger_label)
    inv.ctx.decide(action, env=env, ref=ref, sha=sha, status=ticket.status,
                   deploy_id=ticket.deploy_id)
    return ticket.status








