"""A stateful fake GitLab (REST v4 subset) over real HTTP, for tests and end-to-end runs.

Thread mode:      with FakeGitLabServer() as fake: ...
Subprocess mode:  python -m tests.support.fake_gitlab --port 0 [--state seed.json]
                  (prints its URL on the first line); from Python, FakeGitLabProcess().
Both are driven through the same FakeGitLabControl API. See docs/fake_gitlab.md.
"""

from .app import FakeGitLabApp, Fault
from .server import FakeGitLabControl, FakeGitLabProcess, FakeGitLabServer
from .state import BOT_TOKEN, BOT_USER, DEVELOPER, GUEST, MAINTAINER, OWNER, PLANNER, REPORTER, FakeState

__all__ = [
                    "BOT_TOKEN",
                    "BOT_USER",
                    "DEVELOPER",
                    "GUEST",
                    "MAINTAINER",
                    "OWNER",
                    "PLANNER",
                    "REPORTER",
                    "FakeGitLabApp",
                    "FakeGitLabControl",
                    "FakeGitLabProcess",
                    "FakeGitLabServer",
                    "FakeState",
                    "Fault",
]
