"""`devops-agent rules check [FILE]`: every problem of a rules file, merged with the default table.

For a person editing a rules file and for CI: each problem is printed as
`file:line: rule ID: field: message`, all of them in one run.
"""

from __future__ import annotations

import argparse
import sys

from ..loading import DEFAULT_RULES
from ..table import check_files
from .common import user_rules


def run(args: argparse.Namespace) -> int:
    target = user_rules(args.file)
    problems = check_files(target)
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", file=sys.stderr)
        return 1
    print(f"ok: {target or DEFAULT_RULES}")
    return 0
