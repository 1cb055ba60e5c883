"""ECS JSON logging that never blocks the event loop, every line carrying the trace ids."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sys
import threading
import time
from typing import Any

import ecs_logging
import orjson
from opentelemetry import trace

# Fields of little use to operators that cost formatting time on every line.
_EXCLUDED = ["log.origin", "process.thread", "process.name", "log.original"]
ECS_VERSION = "1.6.0"


class TraceContextFilter(logging.Filter):
    """Stamp each record with the current trace and span ids, in the thread that logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.trace_id:
            record.__dict__["trace.id"] = format(ctx.trace_id, "032x")
            record.__dict__["span.id"] = format(ctx.span_id, "016x")
        return True


class EcsFormatter(ecs_logging.StdlibFormatter):
    """ecs-logging's layout, with a fast path for records that carry a ready ECS dict.

    The generic formatter flattens and re-nests every extra on every line (~100 µs);
    access-log records instead pass `extra={"ecs": {...}}` already nested, and only the
    common fields are added here, then serialised with orjson (a few µs).
    """

    def __init__(self, service_name: str, version: str) -> None:
        super().__init__(exclude_fields=_EXCLUDED, extra={"service.name": service_name, "service.version": version})
        self._service = {"name": service_name, "version": version}

    def format(self, record: logging.LogRecord) -> str:
        document = record.__dict__.get("ecs")
        if document is None:
            return super().format(record)
        line: dict[str, Any] = {
            "@timestamp": _iso_millis(record.created),
            "log.level": record.levelname.lower(),
            "message": record.getMessage(),
            "ecs.version": ECS_VERSION,
            "log": {"logger": record.name},
            "service": self._service,
            "process": {"pid": record.process},
        }
        trace_id = record.__dict__.get("trace.id")
        if trace_id:
            line["trace"] = {"id": trace_id}
            line["span"] = {"id": record.__dict__["span.id"]}
        line.update(document)
        return orjson.dumps(line).decode()


_second_cache: list[Any] = [-1, ""]


def _iso_millis(created: float) -> str:
    seconds = int(created)
    if _second_cache[0] != seconds:
        _second_cache[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_second_cache[1]}.{int((created - seconds) * 1000):03d}Z"


class ProbeSampler:
    """Keep one access line per route per `interval` for the plumbing that calls every few seconds.

    Health checks and scrapes that succeed say nothing new each time; writing them all buries
    the requests people look for (and Logstash drops them anyway). A line that is written
    says how many were left out before it. Failures are never sampled.
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def admit(self, route: str, now: float) -> int | None:
        """None to skip this line; else how many lines of the route were skipped before it."""
        last = self._last.get(route)
        if last is not None and now - last < self.interval:
            self._skipped[route] = self._skipped.get(route, 0) + 1
            return None
        self._last[route] = now
        return self._skipped.pop(route, 0)


class AccessLog:
    """One ECS line per request, built directly (no LogRecord) and handed to the writer thread in batches.

    Request lines are the only per-request logging: skipping the logging machinery halves their
    cost, and handing lines over one by one would wake the writer thread (taking the GIL from the
    event loop) once per request. Lines are serialised when written, so they keep their own time,
    and go to the writer every `interval` seconds or `max_batch` lines, whichever comes first;
    `flush` at shutdown hands over the rest. Where logging was not configured by
    `configure_logging` (in-process tests), each line goes through the named logger instead, its
    ECS fields under the record's `ecs` attribute.
    """

    def __init__(
        self, service_name: str, version: str, logger_name: str, *,
        interval: float = 0.05, max_batch: int = 256, lines: queue.SimpleQueue[str | None] | None = None,
    ) -> None:
        self._logger = logging.getLogger(logger_name)
        self._service = {"name": service_name, "version": version}
        self._pid = os.getpid()
        if lines is None:
            handoff = next((h for h in logging.getLogger().handlers if isinstance(h, _Handoff)), None)
            lines = handoff.lines if handoff is not None else None
        self._lines = lines
        self.interval = interval
        self.max_batch = max_batch
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        # Health checks and scrapes that succeed: one line a minute per route is enough.
        self.probes = ProbeSampler(60.0)

    @property
    def enabled(self) -> bool:
        return not self._logger.disabled and self._logger.isEnabledFor(logging.INFO)

    def write(self, message: str, document: dict[str, Any], ids: tuple[str, str] | None = None) -> None:
        """Log one request: `document` is its ECS fields, already nested; `ids` its (trace id, span id)."""
        if self._lines is None:
            self._logger.info(message, extra={"ecs": document})
            return
        line: dict[str, Any] = {
            "@timestamp": _iso_millis(time.time()),
            "log.level": "info",
            "message": message,
            "ecs.version": ECS_VERSION,
            "log": {"logger": self._logger.name},
            "service": self._service,
            "process": {"pid": self._pid},
        }
        if ids is not None:
            line["trace"] = {"id": ids[0]}
            line["span"] = {"id": ids[1]}
        line.update(document)
        self._pending.append(orjson.dumps(line).decode())
        if len(self._pending) >= self.max_batch:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Hand the lines written so far to the writer thread."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and self._lines is not None:
            self._lines.put("\n".join(self._pending))
            self._pending = []


def readable(line: str) -> str:
    """An ECS JSON line as a person reads it on a terminal: time, level, logger, message, the key facts."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    if not isinstance(doc, dict):
        return line
    stamp = str(doc.get("@timestamp", ""))[11:23]
    level = str(doc.get("log.level", "")).upper()
    logger = (doc.get("log") or {}).get("logger", "")
    text = f"{stamp} {level:<7} {logger:<12} {doc.get('message', '')}"
    duration = (doc.get("event") or {}).get("duration")
    if isinstance(duration, int):
        text += f" {duration / 1e6:.1f}ms"
    client = (doc.get("client") or {}).get("ip")
    if client:
        text += f" from {client}"
    trace_id = (doc.get("trace") or {}).get("id")
    if trace_id and level in ("WARNING", "ERROR", "CRITICAL"):
        text += f" trace={trace_id}"
    error = doc.get("error") or {}
    if isinstance(error, dict) and error.get("stack_trace"):
        text += f"\n    {error.get('type', 'error')}: {error.get('message', '')}\n" + str(error["stack_trace"]).rstrip()
    return text


class _Handoff(logging.Handler):
    """Format in the logging thread (cheap), hand the finished line to the writer thread."""

    def __init__(self, lines: queue.SimpleQueue[str | None]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.put(self.format(record))
        except Exception:
            self.handleError(record)


class LineWriter:
    """A thread that writes finished lines to stdout and a file, in batches.

    Only the writes (syscalls, which release the GIL) happen off the event loop, so the two
    threads never contend for the GIL over formatting, and a slow disk never stalls a request.
    The file is reopened when rotated away (logrotate), like WatchedFileHandler.
    """

    def __init__(self, lines: queue.SimpleQueue[str | None], log_file: str | None, *, console: bool = False) -> None:
        self.lines = lines
        self.log_file = log_file
        # On a terminal, stdout gets readable lines; the file (and a pipe) keep ECS JSON.
        self.console = console
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._file: Any = None
        self._inode: tuple[int, int] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self.lines.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self.lines.get()]
            while True:
                try:
                    batch.append(self.lines.get_nowait())
                except queue.Empty:
                    break
            if None in batch:
                stopping = True
                batch = [line for line in batch if line is not None]
            if batch:
                self._write("\n".join(batch) + "\n")  # type: ignore[arg-type]
        if self._file is not None:
            self._file.close()

    def _write(self, text: str) -> None:
        try:
            if self.console:
                sys.stdout.write("\n".join(readable(line) for line in text.splitlines()) + "\n")
            else:
                sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        if self.log_file:
            try:
                self._reopen_if_rotated()
                self._file.write(text)
                self._file.flush()
            except OSError:
                self._file = None

    def _reopen_if_rotated(self) -> None:
        try:
            stat = os.stat(self.log_file)  # type: ignore[arg-type]
            current: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except FileNotFoundError:
            current = None
        if self._file is None or current != self._inode:
            if self._file is not None:
                self._file.close()
            self._file = open(self.log_file, "a", encoding="utf-8")  # type: ignore[arg-type]  # noqa: SIM115
            stat = os.fstat(self._file.fileno())
            self._inode = (stat.st_dev, stat.st_ino)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def configure_logging(
    service_name: str, version: str, *, level: str = "INFO", log_file: str | None = None
) -> LineWriter:
    """Send every log record as one ECS JSON line to stdout (and a file), written by a thread.

    The caller stops the returned writer at shutdown, which flushes what is queued.
    """
    # The caller's file and line are excluded from our lines: skip looking them up (logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    handoff = _Handoff(lines)
    handoff.setFormatter(EcsFormatter(service_name, version))
    handoff.addFilter(TraceContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handoff)
    root.setLevel(level.upper())
    # aiohttp's own access logger would duplicate ours with less context.
    logging.getLogger("aiohttp.access").disabled = True
    writer = LineWriter(lines, log_file, console=_is_terminal(sys.stdout))
    writer.start()
    return writer
