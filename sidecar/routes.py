"""Map a request target to a bounded route label and platform; refuse the bot's private paths."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes


@dataclass(frozen=True, slots=True)
class Route:
    """What metrics, logs and rate-limit rules know about a request's path."""

    label: str
    platform: str
    blocked: bool = False


# The bot's public routes; anything else is labelled `other` so label values stay bounded.
KNOWN_ROUTES: dict[str, str] = {
    "/api/v1/chat": "api",
    "/health": "system",
    "/api/health": "system",
    "/ready": "system",
    "/feishu/event": "feishu",
    "/dingtalk/callback": "dingtalk",
    "/wecom/callback": "wecom",
    "/qq/callback": "qq",
    "/slack/events": "slack",
    "/telegram/webhook": "telegram",
}
CHAT_ROUTE = "/api/v1/chat"
OTHER = Route("other", "other")
BLOCKED = Route("blocked", "other", blocked=True)
# Served by the bot or the sidecar's admin port only; the public port must never reveal them.
# `/alerts/*` is the bot's Alertmanager receiver: Alertmanager reaches the bot directly.
_PRIVATE = (b"/metrics", b"/sidecar", b"/alerts")

_EXACT: dict[bytes, Route] = {path.encode(): Route(path, platform) for path, platform in KNOWN_ROUTES.items()}
_EXACT.update({prefix: BLOCKED for prefix in _PRIVATE})


def resolve(target: bytes) -> tuple[Route, bytes] | None:
    """The route of a request target and the origin-form target to forward; None if unusable.

    The common case is one dict lookup on the raw path. Anything unusual (percent-escapes,
    absolute-form, dot segments) is normalised the way the bot's router would read it, so an
    encoded `/%6detrics` is refused like `/metrics`.
    """
    path, _, _ = target.partition(b"?")
    route = _EXACT.get(path)
    if route is not None:
        return route, target
    return _resolve_slowly(target)


def _resolve_slowly(target: bytes) -> tuple[Route, bytes] | None:
    lowered = target[:8].lower()
    if lowered.startswith((b"http://", b"https://")):
        rest = target[target.index(b"//") + 2:]
        cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
        target = rest[cut:] or b"/"
        if not target.startswith(b"/"):
            target = b"/" + target
    if not target.startswith(b"/"):
        return None
    path = target.partition(b"?")[0].partition(b"#")[0]
    decoded = unquote_to_bytes(path)
    normal = posixpath.normpath(decoded).lower()
    if normal.startswith(b"//"):
        normal = b"/" + normal.lstrip(b"/")
    for private in _PRIVATE:
        if normal == private or normal.startswith(private + b"/"):
            return BLOCKED, target
    return _EXACT.get(decoded, OTHER), target
