"""Running a service process (the bot or the sidecar) on uvloop until it is told to stop."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from servicekit.errors import ConfigError

if TYPE_CHECKING:
    from servicekit.logs import LineWriter


def run_service(name: str, serve: Coroutine[Any, Any, None], writer: LineWriter) -> int:
    """Run `serve` to completion; failures to start are one log line and an exit code, not a traceback.

    2: a setting only the wiring could judge was wrong; 1: the port is taken, a directory is not
    writable...; 0: stopped on a signal. The log writer is flushed in every case.
    """
    log = logging.getLogger(name)
    try:
        import uvloop

        uvloop.run(serve)
    except ConfigError as exc:
        log.error("%s: %s", name, exc.message)
        return 2
    except OSError as exc:
        log.error("%s: cannot start: %s", name, exc)
        return 1
    finally:
        writer.stop()
    return 0
