"""GitLab's failures, typed: what every call of the adapter raises instead of python-gitlab's
and requests' own exceptions, with the HTTP status when there was one, and how the engine
treats each (tasks/engine/errors.py). Messages never contain the token: the adapter scrubs them
before they get here.
"""

from __future__ import annotations


class GitLabError(Exception):
    """Any failed GitLab call. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def error_kind(self) -> str:
        """For the engine (tasks/engine/errors.py): a 4xx is the request's own fault and
        never succeeds on a retry; anything else may."""
        return "permanent" if self.status is not None and 400 <= self.status < 500 else "transient"


class NotFound(GitLabError):
    """404: the project, object or membership does not exist (or is invisible to the bot)."""


class Forbidden(GitLabError):
    """401/403: bad token or not allowed (also: a job that is not retryable)."""


class RateLimited(GitLabError):
    """429 after the bounded retries, or a Retry-After too long to wait in a worker."""

    def __init__(self, message: str, status: int | None = 429,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after

    @property
    def error_kind(self) -> str:
        return "transient"


class GitLabUnavailable(GitLabError):
    """5xx, timeouts or network errors that persisted through the bounded retries."""

    @property
    def error_kind(self) -> str:
        return "transient"


def from_gitlab(message: str, status: int | None, retry_after: float | None = None) -> GitLabError:
    """The error for an HTTP status python-gitlab reported (None: no answer at all)."""
    if status == 404:
        return NotFound(message, status)
    if status in (401, 403):
        return Forbidden(message, status)
    if status == 429:
        return RateLimited(message, status, retry_after=retry_after)
    if status is None or status >= 500:
        return GitLabUnavailable(message, status)
    return GitLabError(message, status)


class FileTooLarge(GitLabError):
    """A repository file is larger than the caller's bound; only the bound was read."""
