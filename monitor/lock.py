"""I/O: the instance lock, an flock beside the database that the kernel drops on any exit."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from monitor.errors import LockedError, StoreError


class InstanceLock:
    """Held by `run` and `run --once` for their whole life."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file {self.path} beside the database "
                f"({exc.strerror or exc})",
                hint="check [monitor] database: its folder must exist or be creatable, and writable",
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LockedError(
                f"another monitor (PID {holder}) is already running on {self.path.with_suffix('')}",
                hint="stop it first, or use read-only commands such as `monitor status`",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
