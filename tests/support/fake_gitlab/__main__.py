"""`python -m tests.support.fake_gitlab --port P [--state seed.json]`: serve the fake GitLab,
printing its base URL (for python-gitlab) on the first line of stdout."""

import argparse

from .server import serve

parser = argparse.ArgumentParser(prog="python -m tests.support.fake_gitlab")
parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--state", help="JSON seed file: {users: [...], projects: [...]}")
args = parser.parse_args()
serve(args.port, args.state, args.host)
