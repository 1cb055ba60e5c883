"""The contract every platform plugin fulfils, and the neutral values it exchanges with the core.

A platform is one package under `bot/platforms/<name>/` (settings.py, crypto.py, adapter.py,
api.py) exposing `plugin = PlatformPlugin(...)`, registered under the `botwatch.platforms`
entry-point group. The core never imports a platform by name.

An adapter implements PlatformAdapter and, where it needs them, the optional capabilities
Startable, Closable, Checkable, OutboundLimited, ReplyWindowed and StreamedReplies; a plugin may also offer a
GroupRobot sender.
All of them are checked once, when the adapter is registered (AdapterHooks.of).
"""

from __future__ import annotations

import inspect
import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Protocol, runtime_checkable

import aiohttp
from limits import parse_many
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator

from bot.errors import ConfigError
from bot.messages import InboundMessage, Reply
from bot.platforms.redact import scrub_credentials
from servicekit.addresses import IPNetwork

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from bot.telemetry.metrics import BotMetrics


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """An incoming callback as the adapter sees it: no framework types, the body as exact bytes."""

    method: str
    path: str
    query_string: str  # raw, undecoded: some platforms (WeCom) need '+' kept as '+'
    query: Mapping[str, str]  # decoded the usual way
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    remote: str
    received_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What the platform must get back, in its own expected form."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decoded:
    """The outcome of decoding one callback.

    kind: "challenge" (URL verification: answer `response`, nothing to process),
          "message" (`messages` to answer), "ignore" (a valid event we do not answer).
    """

    kind: Literal["challenge", "message", "ignore"]
    messages: Sequence[InboundMessage] = ()
    response: WebhookResponse | None = None
    # Extra per-callback context the adapter wants back in ack() (e.g. WeCom's nonce).
    context: Mapping[str, Any] = field(default_factory=dict)


class DeliveryFailed(Exception):
    """Sending a reply failed. `retryable` asks the worker to try again (after `retry_after` s if given)."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None) -> None:
        # The one boundary every platform error crosses on its way to responses, logs and dead letters.
        reason = scrub_credentials(reason)
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class OutboundLimit(NamedTuple):
    """A sending budget a reply draws on: at most `rate` ("20/minute", `limits` notation) per `key`.

    The key names what the platform counts (a robot in a chat, an app), prefixed with the
    platform and app so that two apps never share a budget.
    """

    key: str
    rate: str


def _rates(value: str) -> str:
    parse_many(value)  # raises ValueError naming the string, so start-up fails on a typo
    return value


# A settings field holding `limits` rate strings ("50/second;1000/minute"), checked at start-up.
RateLimits = Annotated[str, AfterValidator(_rates)]


@runtime_checkable
class PlatformAdapter(Protocol):
    """One chat platform: verify and decode its callbacks, acknowledge them, format and send replies."""

    # Read-only members, so adapters may declare them as plain class attributes.
    @property
    def name(self) -> str: ...

    @property
    def routes(self) -> Sequence[Route]: ...

    def verify(self, request: WebhookRequest) -> None:
        """Check signature, token and timestamp window; raise WebhookRejected(reason, status=401/403).

        Must run in constant time with respect to secrets, and never put a secret in the message.
        """
        ...

    def decode(self, request: WebhookRequest) -> Decoded:
        """Decrypt and parse a verified callback; raise WebhookRejected('decrypt_failed'|'malformed'|'bad_token')."""
        ...

    def ack(self, request: WebhookRequest, decoded: Decoded) -> WebhookResponse:
        """The acknowledgement the platform expects once the messages are durably queued."""
        ...

    def format(self, reply: Reply) -> dict[str, Any]:
        """The platform's JSON payload for a reply (pure: no I/O)."""
        ...

    async def send(self, reply: Reply) -> None:
        """Deliver a reply through the platform's API; raise DeliveryFailed on failure.

        Must be safe to call again for the same reply after a crash: pass the platform's
        idempotency key where it has one, derived from `reply.inbound.message_id`.
        """
        ...

    # Optional capabilities: the Protocols below, found once by AdapterHooks.of at registration.


@runtime_checkable
class Startable(Protocol):
    async def start(self) -> None:
        """Called once the app is up (e.g. to open the platform's WebSocket); must return promptly."""
        ...


@runtime_checkable
class Closable(Protocol):
    async def close(self) -> None:
        """Called at shutdown: release what start opened. Must not raise."""
        ...


@runtime_checkable
class Checkable(Protocol):
    async def check(self) -> None:
        """Part of /ready: raise DependencyUnavailable while the platform's own connection is down."""
        ...


@runtime_checkable
class OutboundLimited(Protocol):
    def outbound_limits(self, reply: Reply) -> Sequence[OutboundLimit]:
        """The platform's sending budgets this reply counts against (pure: no I/O).

        The delivery worker holds the reply in the queue until every one has room, so the
        platform never throttles the bot.
        """
        ...


@runtime_checkable
class ReplyWindowed(Protocol):
    def reply_window(self, message: InboundMessage) -> float | None:
        """Seconds after receipt the platform still accepts a reply to `message` (None: no limit of its own).

        The delivery worker stops retrying past it (QQ: 5 minutes in a group, 60 in a direct chat).
        """
        ...


@runtime_checkable
class StreamedReplies(Protocol):
    """A platform whose messages can be edited: a reply is sent early and grows as the model writes."""

    def update_limits(self, message: InboundMessage) -> Sequence[OutboundLimit] | None:
        """The sending budgets an update of a reply to `message` draws on; None sends the reply whole (streaming off).

        An update the budgets have no room for is skipped (the next one carries its text); the
        finished reply is always sent.
        """
        ...

    async def begin_reply(self, reply: Reply) -> str:
        """Send the first part of a reply as a new message; return its id (kept durably). Raise DeliveryFailed."""
        ...

    async def update_reply(self, reply: Reply, handle: str) -> None:
        """Make message `handle` read `reply.text`. Raise DeliveryFailed.

        Must succeed when the message already reads that text: a retry after a crash sends the
        finished text again. `reply.partial` is False for the finished text, which may close the
        message to further edits (a streaming card's end).
        """
        ...


_ASYNC_HOOKS = ("start", "close", "check", "begin_reply", "update_reply")
_PLAIN_HOOKS = ("outbound_limits", "reply_window", "update_limits")


@dataclass(frozen=True)
class AdapterHooks:
    """The optional capabilities of one adapter, found and checked once, when it is registered."""

    start: Callable[[], Awaitable[None]] | None = None
    close: Callable[[], Awaitable[None]] | None = None
    check: Callable[[], Awaitable[None]] | None = None
    outbound_limits: Callable[[Reply], Sequence[OutboundLimit]] | None = None
    reply_window: Callable[[InboundMessage], float | None] | None = None

    @classmethod
    def of(cls, name: str, adapter: object) -> AdapterHooks:
        """Check `adapter` against PlatformAdapter and the capability Protocols; fail at start-up naming the gap."""
        if not isinstance(adapter, PlatformAdapter):
            missing = [m for m in ("name", "routes", "verify", "decode", "ack", "format", "send")
                       if not hasattr(adapter, m)]
            raise ConfigError(f"platform {name}: the adapter lacks {', '.join(missing)} (see PlatformAdapter)")
        if adapter.name != name:
            raise ConfigError(f"platform {name}: the adapter calls itself {adapter.name!r}")
        for hook in _ASYNC_HOOKS:
            value = getattr(adapter, hook, None)
            if value is not None and not inspect.iscoroutinefunction(value):
                raise ConfigError(f"platform {name}: {hook} must be an `async def` method")
        for hook in _PLAIN_HOOKS:
            value = getattr(adapter, hook, None)
            if value is not None and (not callable(value) or inspect.iscoroutinefunction(value)):
                raise ConfigError(f"platform {name}: {hook} must be a plain method")
        return cls(
            start=adapter.start if isinstance(adapter, Startable) else None,
            close=adapter.close if isinstance(adapter, Closable) else None,
            check=adapter.check if isinstance(adapter, Checkable) else None,
            outbound_limits=adapter.outbound_limits if isinstance(adapter, OutboundLimited) else None,
            reply_window=adapter.reply_window if isinstance(adapter, ReplyWindowed) else None,
        )


@dataclass(frozen=True)
class EnabledPlatform:
    """A configured platform: its plugin and its validated settings block."""

    plugin: PlatformPlugin
    settings: PlatformSettings


@dataclass(frozen=True)
class PlatformDeps:
    """What the core lends every adapter."""

    http: aiohttp.ClientSession
    max_skew_seconds: int
    clock: Callable[[], float]
    # Queue messages that arrive outside an HTTP callback (a platform's own WebSocket):
    # de-duplicated and durable exactly like webhook messages. Returns how many were new.
    submit: Callable[[str, Sequence[InboundMessage]], Awaitable[int]]
    # For platforms that hold their own connection: its health signals, and the process's Redis
    # client (when REDIS_URL is set) so that replicas can agree on which one holds a connection
    # the platform allows only once.
    metrics: BotMetrics | None = None
    redis: aioredis.Redis | None = None


class PlatformSettings(BaseModel):
    """Settings shared by every platform; each platform subclasses this with its own fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    allowed_ips: tuple[IPNetwork, ...] = ()

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
        return value

    def __repr__(self) -> str:
        # Platform blocks hold secrets; show only which fields are set.
        shown = ", ".join(f"{name}=***" for name, value in self if value not in (None, "", ()))
        return f"{type(self).__name__}({shown})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """A message for an IM group's incoming-webhook robot (operators' alert channel)."""

    webhook_url: str
    title: str
    markdown: str
    secret: str | None = None  # the robot's signing secret, where the platform has one


GroupRobot = Callable[[aiohttp.ClientSession, GroupMessage], Awaitable[None]]


@dataclass(frozen=True)
class PlatformPlugin:
    """A platform's registration: its env prefix, settings type, required fields and factory."""

    name: str
    env_prefix: str  # e.g. "FEISHU_"
    settings_type: type[PlatformSettings]
    required: tuple[str, ...]  # fields without which the platform is off
    routes: tuple[Route, ...]  # registered only when the platform is on
    # The adapter's constructor (or any callable of that shape); work that needs the loop goes in `start`.
    create: Callable[[Any, PlatformDeps], PlatformAdapter]
    # Posts to a group robot webhook, raising DeliveryFailed; None when the platform has none.
    group_robot: GroupRobot | None = None

    def load_settings(self, environ: Mapping[str, str]) -> PlatformSettings | None:
        """The platform's typed block, None when it is off; a partial configuration fails naming what is missing."""
        prefix = self.env_prefix.upper()
        values = {key[len(prefix):].lower(): value for key, value in environ.items()
                  if key.upper().startswith(prefix) and value != ""}
        present = [name for name in self.required if name in values]
        if not present:
            return None
        missing = [prefix + name.upper() for name in self.required if name not in values]
        if missing:
            raise ConfigError(f"{self.name} is partly configured; missing: {', '.join(missing)}")
        try:
            return self.settings_type(**values)
        except ValidationError as exc:
            raise ConfigError.from_validation(exc, prefix=prefix) from None
