"""A platform connection the bot holds itself: watched, reconnected with backoff, paused by a breaker.

DingTalk Stream and Feishu's long connection each supply one `Session` (open, read, acknowledge);
this module keeps it alive. A connection is never trusted because it is open: every frame (a
message, a ping, a pong) is recorded, and one silent for longer than the bound is dropped and
opened again. Failures back off exponentially with jitter; after several in a row, or as soon as
the platform refuses the credentials, a breaker pauses attempts so that an outage costs one
error line and one attempt per pause instead of a storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from pydantic import Field

from bot.errors import DependencyUnavailable, WebhookRejected
from bot.platforms.base import Decoded, DeliveryFailed, PlatformDeps, PlatformSettings

if TYPE_CHECKING:
    from bot.platforms.base import PlatformDeps
    from bot.platforms.lease import Lease
    from bot.telemetry.metrics import BotMetrics

log = logging.getLogger("bot.platforms.longconn")

# Why a connection ended: the `reason` label of bot_platform_reconnects_total (a bounded set).
SILENT = "silent"  # no frame, ping or pong within the bound
DISCONNECT = "disconnect"  # the platform asked us to move to a new connection
CLOSED = "closed"  # the platform (or the network) closed the socket
UNREACHABLE = "unreachable"  # the open call or the WebSocket handshake failed
REFUSED = "refused"  # the platform refused the credentials
LEASE_LOST = "lease_lost"  # another replica holds the connection now
ERROR = "error"  # anything unexpected (logged with its traceback)
REASONS = (SILENT, DISCONNECT, CLOSED, UNREACHABLE, REFUSED, LEASE_LOST, ERROR)


class LongConnectionSettings(PlatformSettings):
    """The fields every long-connection platform shares (env names take the platform's prefix)."""

    reconnect_base_seconds: float = Field(1.0, gt=0)
    reconnect_max_seconds: float = Field(60.0, gt=0)
    # No frame, ping or pong for this long and the connection is dropped and opened again.
    # Pings go out at a third of it, so a live connection always has something to show.
    silence_seconds: float = Field(60.0, gt=0)
    # This many attempts in a row that get no connection open the breaker; refused credentials open it at once.
    breaker_failures: int = Field(5, ge=1)
    breaker_seconds: float = Field(300.0, gt=0)
    # With REDIS_URL, how long a replica's hold on a one-holder connection lasts without renewal:
    # the longest a dead holder's platform goes unanswered.
    lease_seconds: float = Field(6.0, gt=0)


class ConnectionRefused(Exception):
    """The platform refused the app's credentials or configuration: retrying soon cannot help."""


class ConnectionUnavailable(Exception):
    """The platform could not be reached or answered with a server error: retry with backoff."""


@dataclass(frozen=True, slots=True)
class Ended:
    """Why a session ended (`reason` is a metric label) and whether to reconnect at once."""

    reason: str
    detail: str
    delay: Literal["none", "backoff"] = "backoff"


class State(enum.StrEnum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    UP = "up"
    WAITING = "waiting"  # backing off between attempts
    BREAKER_OPEN = "breaker_open"
    STANDBY = "standby"  # another replica holds the connection


@dataclass
class ReconnectPolicy:
    """How soon to try again. A platform may replace the numbers with those its server sends."""

    base: float
    ceiling: float
    breaker_failures: int
    breaker_seconds: float
    # A random wait up to this long before the first attempt after a drop, so replicas spread out.
    first_jitter: float = 0.0

    def delay(self, failures: int) -> float:
        """Exponential with jitter, never below half the step; the first retry adds `first_jitter`."""
        step = float(min(self.ceiling, self.base * 2 ** min(failures, 30))) * random.uniform(0.5, 1.0)
        if failures == 0 and self.first_jitter > 0:
            step = random.uniform(0.0, self.first_jitter)
        return step


@dataclass
class Link:
    """One open connection as the supervisor watches it: sessions call `seen()` on every frame."""

    clock: Callable[[], float]
    on_frame: Callable[[], None]
    last_frame: float = 0.0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def seen(self) -> None:
        self.last_frame = self.clock()
        self.on_frame()

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """A helper task (a pinger, a drain of the old socket) that ends with the supervisor."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


# A session opens one connection and reads it until it ends: it calls the second argument once
# the platform has accepted the connection, `link.seen()` for every frame, and returns why it
# ended; it raises ConnectionRefused or ConnectionUnavailable when it cannot open one.
Session = Callable[[Link, Callable[[], None]], Awaitable[Ended]]


class LongConnection:
    """Keeps one platform connection alive in a background task (single-flight: one at a time)."""

    def __init__(
        self,
        platform: str,
        session: Session,
        settings: LongConnectionSettings,
        *,
        metrics: BotMetrics | None = None,
        lease: Lease | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.platform = platform
        self.session = session
        self.silence = settings.silence_seconds
        self.policy = ReconnectPolicy(
            settings.reconnect_base_seconds, settings.reconnect_max_seconds,
            settings.breaker_failures, settings.breaker_seconds,
        )
        # Sessions that lasted this long were healthy: the failure count starts again.
        self.stable_seconds = max(settings.silence_seconds, settings.reconnect_max_seconds)
        self.metrics = metrics
        self.lease = lease
        self.clock = clock
        self.wall_clock = wall_clock
        self.state = State.STOPPED
        self.failures = 0  # attempts since the last healthy session: the backoff step
        self.failed_opens = 0  # attempts in a row that never got a connection: the breaker's count
        self.last_ended: Ended | None = None
        self.connected_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._gauges(up=0, standby=0, breaker=0)
        if metrics is not None:
            # Every reason starts at 0, so the first reconnect already shows in rate() and increase().
            for reason in REASONS:
                metrics.reconnects.labels(platform, reason)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.platform}-connection")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.lease is not None:
            await self.lease.release()  # the Redis client is the app's: it closes it
        self._set(State.STOPPED)
        self._gauges(up=0, standby=0, breaker=0)

    def check(self) -> None:
        """Raise DependencyUnavailable unless the connection is up or another replica holds it."""
        if self.state in (State.UP, State.STANDBY):
            return
        why = f" ({self.last_ended.reason}: {self.last_ended.detail})" if self.last_ended else ""
        raise DependencyUnavailable(f"{self.platform} connection is {self.state.value}{why}")

    def snapshot(self) -> dict[str, Any]:
        """What operators need to know about the connection (no credentials)."""
        return {"state": self.state.value, "failures": self.failures,
                "last_ended": self.last_ended.reason if self.last_ended else None}

    async def _run(self) -> None:
        while True:
            if self.lease is not None and not await self._hold_lease():
                continue
            ended = await self._attempt()
            self.last_ended = ended
            self._gauges(up=0)
            if self.metrics is not None:
                self.metrics.reconnects.labels(self.platform, ended.reason).inc()
            was_up = self.connected_at is not None
            healthy = self.connected_at is not None and self.clock() - self.connected_at >= self.stable_seconds
            if healthy:
                self.failures = 0
            self.connected_at = None
            if ended.reason == REFUSED:
                # Credentials or configuration: nothing changes by trying again soon.
                log.error("%s connection refused: %s; next attempt in %.0fs", self.platform, ended.detail,
                          self.policy.breaker_seconds, extra=self._fields(ended))
                await self._breaker()
                continue
            if ended.reason == LEASE_LOST:
                log.warning("%s connection handed over: %s", self.platform, ended.detail, extra=self._fields(ended))
                continue
            if ended.delay == "none" and was_up and self.failures == 0:
                # Asked to move (DingTalk's disconnect): go now. A connection that keeps asking
                # right after opening is counted, so the next time backs off like any failure.
                if not healthy:
                    self.failures = 1
                log.info("%s connection ended (%s: %s); reconnecting now", self.platform, ended.reason,
                         ended.detail, extra=self._fields(ended))
                continue
            if not was_up:
                self.failed_opens += 1
            # Only attempts that never got a connection open the breaker: a connection that keeps
            # opening and dropping backs off (and shows as a reconnect storm) but is not paused.
            if self.failed_opens >= self.policy.breaker_failures:
                log.error("%s connection could not be opened %d times in a row (last: %s: %s); pausing for %.0fs",
                          self.platform, self.failed_opens, ended.reason, ended.detail,
                          self.policy.breaker_seconds, extra=self._fields(ended))
                await self._breaker()
                continue
            delay = self.policy.delay(self.failures)
            self.failures += 1
            log.warning("%s connection ended (%s: %s); reconnecting in %.2fs", self.platform, ended.reason,
                        ended.detail, delay, extra=self._fields(ended))
            self._set(State.WAITING)
            await asyncio.sleep(delay)

    async def _attempt(self) -> Ended:
        self._set(State.CONNECTING)
        link = Link(self.clock, self._frame)
        link.last_frame = self.clock()
        try:
            return await self._watched(link)
        except ConnectionRefused as exc:
            return Ended(REFUSED, str(exc))
        except DeliveryFailed as exc:  # the open call failed (network, 5xx, 429)
            return Ended(UNREACHABLE, exc.reason)
        except ConnectionUnavailable as exc:
            return Ended(UNREACHABLE, str(exc))
        except aiohttp.ClientResponseError as exc:
            # Its text names the URL, whose query holds a one-time ticket: only the status is kept.
            return Ended(UNREACHABLE, f"the WebSocket handshake was answered with HTTP {exc.status}")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            return Ended(UNREACHABLE, type(exc).__name__)
        except Exception as exc:
            # Whatever went wrong, a dead task would silently stop every message: log and go on.
            log.exception("%s connection failed unexpectedly", self.platform, extra={"labels.platform": self.platform})
            return Ended(ERROR, type(exc).__name__)
        finally:
            for task in list(link.tasks):
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)

    async def _watched(self, link: Link) -> Ended:
        """Run the session until it ends, the watchdog finds it silent, or the lease is lost."""
        session: asyncio.Task[Ended] = asyncio.ensure_future(self.session(link, self._up))
        session.set_name(f"{self.platform}-session")
        watchers = {asyncio.create_task(self._watchdog(link), name=f"{self.platform}-watchdog")}
        if self.lease is not None:
            watchers.add(asyncio.create_task(self.lease.lost(), name=f"{self.platform}-lease"))
        try:
            done, _ = await asyncio.wait({session, *watchers}, return_when=asyncio.FIRST_COMPLETED)
            if session in done:
                return session.result()
            ended: Ended = next(iter(done)).result()
            return ended
        finally:
            for task in (session, *watchers):
                task.cancel()
            await asyncio.gather(session, *watchers, return_exceptions=True)

    async def _watchdog(self, link: Link) -> Ended:
        while True:
            quiet = self.clock() - link.last_frame
            if quiet >= self.silence:
                return Ended(SILENT, f"no frame for {quiet:.1f}s (bound {self.silence:g}s)")
            await asyncio.sleep(min(self.silence - quiet, max(self.silence / 10, 0.05)))

    async def _hold_lease(self) -> bool:
        assert self.lease is not None
        try:
            held = await self.lease.acquire()
        except Exception as exc:  # Redis down: nobody can know who holds the connection
            self._set(State.WAITING)
            self._gauges(standby=0)
            self.last_ended = Ended(UNREACHABLE, f"lease store unavailable: {type(exc).__name__}")
            log.warning("%s connection lease unavailable (%s); retrying", self.platform, type(exc).__name__,
                        extra={"labels.platform": self.platform})
            await asyncio.sleep(self.lease.poll_seconds)
            return False
        if not held:
            if self.state != State.STANDBY:
                log.info("%s connection is held by another replica; standing by", self.platform,
                         extra={"labels.platform": self.platform})
            self._set(State.STANDBY)
            self._gauges(standby=1)
            await asyncio.sleep(self.lease.poll_seconds)
            return False
        self._gauges(standby=0)
        return True

    async def _breaker(self) -> None:
        self._set(State.BREAKER_OPEN)
        self._gauges(breaker=1)
        if self.lease is not None:
            # Someone else may do better (or fail the same way); do not keep the connection to ourselves.
            await self.lease.release()
        await asyncio.sleep(self.policy.breaker_seconds)
        self.failures = self.failed_opens = 0
        self._gauges(breaker=0)

    def _up(self) -> None:
        """Sessions call this once the platform accepted the connection."""
        self.connected_at = self.clock()
        self.failed_opens = 0
        self._set(State.UP)
        self._gauges(up=1, breaker=0)
        log.info("%s connection up", self.platform, extra={"labels.platform": self.platform})

    def _frame(self) -> None:
        if self.metrics is not None:
            self.metrics.last_frame.labels(self.platform).set(self.wall_clock())

    def _set(self, state: State) -> None:
        self.state = state

    def _gauges(self, *, up: int | None = None, standby: int | None = None, breaker: int | None = None) -> None:
        if self.metrics is None:
            return
        if up is not None:
            self.metrics.connection_up.labels(self.platform).set(up)
        if standby is not None:
            self.metrics.connection_standby.labels(self.platform).set(standby)
        if breaker is not None:
            self.metrics.connection_breaker_open.labels(self.platform).set(breaker)

    def _fields(self, ended: Ended) -> dict[str, Any]:
        return {"labels.platform": self.platform, "labels.reason": ended.reason,
                "labels.connection_state": self.state.value}


def open_connection(
    platform: str, session: Session, settings: LongConnectionSettings, deps: PlatformDeps,
    *, lease_key: str | None = None,
) -> LongConnection:
    """A supervised connection; with `lease_key` and Redis configured, held by one replica at a time."""
    lease = None
    if lease_key is not None and deps.redis is not None:
        from bot.platforms.lease import Lease

        lease = Lease(deps.redis, lease_key, settings.lease_seconds)
    return LongConnection(platform, session, settings, metrics=deps.metrics, lease=lease)


async def queue_frame(deps: PlatformDeps, platform: str, decode: Callable[[], Decoded], what: str, again: str) -> bool:
    """Decode one pushed message and queue it durably; True when the frame may be acknowledged.

    A frame that cannot be read is acknowledged all the same (counted and logged as a rejected
    callback), or it would come back forever; one the queue could not take is not, so the platform
    sends it again (`again` says how, in the log line).
    """
    try:
        decoded = decode()
    except WebhookRejected as exc:
        log.warning("%s skipped: %s", what, exc.message, extra={"labels.platform": platform, "labels.reason": exc.reason})
        if deps.metrics is not None:
            deps.metrics.webhook_rejected.labels(platform, exc.reason).inc()
        return True
    if decoded.kind != "message":
        return True
    try:
        await deps.submit(platform, decoded.messages)
    except Exception as exc:
        log.error("%s not queued (%s); %s", what, type(exc).__name__, again, extra={"labels.platform": platform})
        return False
    return True
