"""`/devops help`: generated from every command's help record."""

from tasks.chatops.core import COMMANDS, Invocation, command
from tasks.platform.handlers import CommandHelp


def help_text(prefix: str) -> str:
    lines = ["| Command | What it does | Who |", "|---|---|---|"]
    for cmd in sorted(COMMANDS.values(), key=lambda c: c.name):
        lines.append(f"| `{prefix} {cmd.help.usage}` | {cmd.help.description} | {cmd.help.who} |")
    return "\n".join(lines)


@command("help", CommandHelp(usage="help", description="List the commands.",
                             examples=("/devops help",), who="anyone who can comment"))
def run(inv: Invocation) -> str:
    inv.reply("devops-agent commands:\n\n" + help_text(inv.config.chatops.prefix))
    return "help"
