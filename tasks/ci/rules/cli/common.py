"""What the rules commands share: exit codes, the user's rules file, messages and JSON output.

Every command module imports this, so it stays free of anything heavier than orjson.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from tasks.config.settings import ConfigError, load_settings

EXIT_MATCHED = 0
EXIT_UNKNOWN = 1
EXIT_USAGE = 2
EXIT_BAD_RULES = 3


def user_rules(arg: Path | None) -> Path | None:
    """The user's rules file: the command line's, else the RULES_FILE setting's."""
    if arg is not None:
        return arg
    # Here, not at the top: this module stays light (see above), and only a command that runs
    # without --rules needs the settings (and pydantic).

    try:
        return load_settings(require_secret=False).rules_file
    except ConfigError as exc:
        err(str(exc))
        raise SystemExit(EXIT_USAGE) from None


def err(msg: str) -> None:
    """A message for the person at the terminal, on standard error."""
    print(f"devops-agent: {msg}", file=sys.stderr)


def write_json(data: Any) -> None:
    """`data` on standard output as indented JSON (the --format json of every command)."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
