"""`python -m sidecar`: proxy the public port to the bot until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
import sys

from aiohttp import web

from servicekit.errors import ConfigError
from servicekit.logs import configure_logging
from servicekit.runtime import run_service
from sidecar import __version__
from sidecar.app import create_app, upstream_urls
from sidecar.keys import public_port_key
from sidecar.rules import Rule, load_rules
from sidecar.settings import Settings, load_settings

log = logging.getLogger("sidecar")


async def serve(settings: Settings, rules: tuple[Rule, ...]) -> None:
    """Serve until a stop signal, then drain requests in flight (bounded) and release everything."""
    app = create_app(settings, rules=rules)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.sidecar_shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, settings.sidecar_admin_host, settings.sidecar_admin_port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Per-request objects die young and free of cycles: move what start-up built out of the
    # collector's way and collect the young generation less often, to keep pauses off requests.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    admin_port = runner.addresses[0][1] if runner.addresses else settings.sidecar_admin_port
    port = app[public_port_key]
    log.info(
        "Sidecar ready on port %d (admin port %d), upstreams %s", port, admin_port, upstream_urls(settings),
        extra={"server.port": port},
    )
    await stop.wait()
    log.info("Stopping: draining in-flight requests for up to %gs", settings.sidecar_shutdown_timeout)
    await runner.cleanup()
    log.info("Stopped")


def raise_fd_limit(settings: Settings) -> None:
    """Lift the soft descriptor limit to the hard one (as nginx's worker_rlimit_nofile does).

    Every client connection and every upstream connection is a descriptor; below the
    connection cap plus the pools the process would fail on accept() instead of refusing cleanly.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    needed = settings.sidecar_max_connections + 2 * settings.sidecar_pool_size + 64
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "descriptor limit %d is below SIDECAR_MAX_CONNECTIONS plus the pools (%d); lower the cap or raise `ulimit -n`",
            soft, needed,
        )


def main() -> int:
    try:
        settings = load_settings(os.environ)
        rules = load_rules(settings.sidecar_rate_limits)
    except ConfigError as exc:
        print(f"sidecar: {exc.message}", file=sys.stderr)
        return 2
    writer = configure_logging(
        settings.sidecar_service_name, __version__, level=settings.sidecar_log_level, log_file=settings.sidecar_log_file
    )
    raise_fd_limit(settings)
    return run_service("sidecar", serve(settings, rules), writer)


if __name__ == "__main__":
    sys.exit(main())
