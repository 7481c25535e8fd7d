"""Every error type of framecast's pipeline, and what the CLI does with each.

A stage raises these; `pipeline/cli.py` turns them into one line and an exit status, so a user
mistake never shows a traceback.
"""

from __future__ import annotations


class UsageError(Exception):
    """A user mistake (bad key, value or path): printed as one line, exit status 2."""


class StageFailed(Exception):
    """A stage that could not finish for a reason other than a user mistake: one line, exit 1."""


class PartialFailure(Exception):
    """Raised by a stage that finished but could not process some inputs (exit status 3)."""


class FrameStoreError(Exception):
    """A store that cannot be used as asked: missing, not a framecast store, wrong version
    (a usage error: exit status 2)."""


class VideoError(Exception):
    """A source that cannot be decoded; str(e) is a one-line reason for reports and logs."""


class BadInput(Exception):
    """A serve client's mistake: `status` (4xx) and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ServeClientError(Exception):
    """A request to `framecast serve` failed: the server's message and HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
