"""The MonitorError tree. Messages are complete sentences naming the thing; hints say what to do.

No I/O. The CLI is the only place that turns these into output and exit codes.
"""

from __future__ import annotations


class MonitorError(Exception):
    """A failure the user can cause or fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(MonitorError):
    """The configuration has problems; `problems` lists every one, each starting with its key path."""

    exit_code = 78

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        count = len(problems)
        summary = f"the configuration has {count} problem{'s' if count != 1 else ''}"
        super().__init__(summary, hint)
        self.problems = problems


class ConfigUnusable(MonitorError):
    """A command needs the config's rules or channels, and the config has problems (already
    printed as warnings)."""

    exit_code = 78


class QueryError(MonitorError):
    """A watch-rule query could not be parsed. `column` is 1-based."""

    exit_code = 78

    def __init__(self, message: str, *, query: str, column: int) -> None:
        super().__init__(message)
        self.query = query
        self.column = column

    def caret(self) -> str:
        """The query and a caret under the offending column, on two lines."""
        return f"{self.query}\n{' ' * (self.column - 1)}^"

    def __str__(self) -> str:
        return f"{self.message} at column {self.column}"


class LockedError(MonitorError):
    """Another `run` holds the instance lock."""

    exit_code = 75


class StoreError(MonitorError):
    """The database cannot be opened or written (disk full, read-only, corrupt)."""


class DeliveryError(MonitorError):
    """A channel refused or could not take a message."""


class FeedError(MonitorError):
    """A feed's document could not be used (not a feed, an HTML page, unreadable)."""
