"""`python -m tests.support.bot_with_example`: `python -m bot` with the test-only example platform registered."""

from __future__ import annotations

import os
import sys

from bot import __version__
from bot.__main__ import serve
from bot.platforms.registry import load_platforms
from bot.settings import load_settings
from servicekit.logs import configure_logging
from tests.bot.platforms.example import plugin


def main() -> int:
    settings = load_settings(os.environ)
    platforms = load_platforms(os.environ, extra=[plugin])
    listener = configure_logging(
        settings.otel_service_name, __version__, level=settings.bot_log_level, log_file=settings.bot_log_file
    )
    try:
        import uvloop

        uvloop.run(serve(settings, platforms))
    finally:
        listener.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
