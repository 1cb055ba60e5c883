"""Access-log records, handed to logging in batches so the log writer thread wakes rarely."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any


class AccessLog:
    """Queue one ECS record per request; pass them to the logger every `interval` or `max_batch` records.

    Handing each record over as it is made wakes the log writer thread once per request, and
    each wake-up takes the GIL from the event loop: at a few thousand requests a second that
    costs more than the proxying. Records keep the time they were made, so batching delays
    lines by at most `interval` without shifting their timestamps.
    """

    def __init__(
        self, logger: logging.Logger, loop: asyncio.AbstractEventLoop, *, interval: float = 0.05, max_batch: int = 256
    ) -> None:
        self.logger = logger
        self.loop = loop
        self.interval = interval
        self.max_batch = max_batch
        self._pending: list[logging.LogRecord] = []
        self._timer: asyncio.TimerHandle | None = None
        # Every access record is a copy of this one with its own time and message: building a
        # LogRecord looks up the pid (a system call) and splits a source path, per request.
        self._template = logging.LogRecord(logger.name, logging.INFO, "", 0, "", None, None).__dict__

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def record(self, message: str, document: dict[str, Any]) -> None:
        """Queue one access line; `document` is its ECS fields, already nested."""
        fields = self._template.copy()
        created = time.time()
        fields["created"] = created
        fields["msecs"] = (created - int(created)) * 1000
        fields["relativeCreated"] = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
        fields["msg"] = message
        fields["ecs"] = document
        record = logging.LogRecord.__new__(logging.LogRecord)
        record.__dict__ = fields
        self._pending.append(record)
        if len(self._pending) >= self.max_batch:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        handle = self.logger.handle
        for record in pending:
            handle(record)
