"""ECS JSON logging that never blocks the event loop, every line carrying the trace ids."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from typing import Any

import ecs_logging
from opentelemetry import trace

# Fields of little use to operators that cost formatting time on every line.
_EXCLUDED = ["log.origin", "process.thread", "process.name", "log.original"]


class TraceContextFilter(logging.Filter):
    """Stamp each record with the current trace and span ids, in the thread that logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.trace_id:
            record.__dict__["trace.id"] = format(ctx.trace_id, "032x")
            record.__dict__["span.id"] = format(ctx.span_id, "016x")
        return True


class _Handoff(logging.handlers.QueueHandler):
    """Queue the record as it is: formatting happens in the listener thread, not here."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        return record


def configure_logging(
    service_name: str, version: str, *, level: str = "INFO", log_file: str | None = None
) -> logging.handlers.QueueListener:
    """Send every log record through a queue to stdout (and a file) as ECS JSON.

    The caller stops the returned listener at shutdown, which flushes what is queued.
    """
    formatter = ecs_logging.StdlibFormatter(
        exclude_fields=_EXCLUDED,
        extra={"service.name": service_name, "service.version": version},
    )
    sinks: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file:
        sinks.append(logging.handlers.WatchedFileHandler(log_file, encoding="utf-8"))
    for sink in sinks:
        sink.setFormatter(formatter)

    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    handoff = _Handoff(records)
    handoff.addFilter(TraceContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handoff)
    root.setLevel(level.upper())
    # aiohttp's own access logger would duplicate ours with less context.
    logging.getLogger("aiohttp.access").disabled = True
    listener = logging.handlers.QueueListener(records, *sinks, respect_handler_level=True)
    listener.start()
    return listener
