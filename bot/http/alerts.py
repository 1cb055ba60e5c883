"""`POST /alerts/alertmanager`: Alertmanager's webhook, forwarded to an operators' IM group."""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from bot.alerts.format import digest
from bot.errors import BackendBadResponse, NotFound, Unauthorized
from bot.http.auth import require_bearer
from bot.http.chat import read_json_object
from bot.http.responses import json_response
from bot.keys import alert_sink_key, http_client_key, metrics_key, settings_key
from bot.platforms.base import DeliveryFailed, GroupMessage

log = logging.getLogger("bot.alerts")


def listens_on_loopback(host: str) -> bool:
    """Whether BOT_HOST keeps the bot unreachable from other machines."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname or a wildcard: assume reachable


class AlertForwardFailed(BackendBadResponse):
    """The group robot refused or could not be reached; Alertmanager retries on this 502."""

    code = "alert_forward_failed"


async def alertmanager(request: web.Request) -> web.Response:
    app = request.app
    settings = app[settings_key]
    sink = app.get(alert_sink_key)
    if sink is None or settings.alerts_webhook_url is None:
        raise NotFound("alert forwarding is not configured")
    if settings.alerts_receiver_token is not None:
        require_bearer(request, (settings.alerts_receiver_token.get_secret_value(),))
    elif not listens_on_loopback(settings.bot_host):
        # Reachable from other hosts: without a token anyone there could post alerts to the ops group.
        raise Unauthorized("the alert receiver requires ALERTS_RECEIVER_TOKEN when the bot listens beyond loopback")
    payload = await read_json_object(request, settings.bot_max_body_bytes)
    summary = digest(payload)
    message = GroupMessage(
        webhook_url=settings.alerts_webhook_url.get_secret_value(),
        title=summary.title,
        markdown=summary.markdown,
        secret=settings.alerts_secret.get_secret_value() if settings.alerts_secret else None,
    )
    counter = app[metrics_key].alerts_forwarded
    try:
        await sink(app[http_client_key], message)
    except DeliveryFailed as exc:
        counter.labels(settings.alerts_platform or "none", "failed").inc()
        log.error("alert not forwarded: %s", exc.reason, extra={"labels.platform": settings.alerts_platform})
        raise AlertForwardFailed(f"group robot did not take the alert: {exc.reason}") from None
    counter.labels(settings.alerts_platform or "none", "sent").inc()
    log.info("alert forwarded: %s", summary.title, extra={"labels.platform": settings.alerts_platform})
    return json_response({"status": "sent", "firing": summary.firing, "resolved": summary.resolved})
