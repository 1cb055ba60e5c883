"""The webhook path: verify, decode, de-duplicate, enqueue durably, then acknowledge."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.delivery.base import InboundQueue
from bot.errors import WebhookRejected
from bot.messages import InboundMessage
from bot.platforms.base import PlatformAdapter, WebhookRequest, WebhookResponse
from bot.telemetry.metrics import BotMetrics
from servicekit.addresses import IPNetwork, address_in
from servicekit.tracing import traceparent


class Intake:
    """Turns one verified callback into durably queued messages and the platform's ACK.

    The ACK never waits for the model: the reply is produced later by the delivery workers.
    """

    def __init__(self, queue: InboundQueue, metrics: BotMetrics, on_admitted: Callable[[], None]) -> None:
        self.queue = queue
        self.metrics = metrics
        self.on_admitted = on_admitted

    async def receive(
        self, adapter: PlatformAdapter, request: WebhookRequest, allowed_ips: tuple[IPNetwork, ...] = ()
    ) -> WebhookResponse:
        if allowed_ips and not address_in(request.remote, allowed_ips):
            raise WebhookRejected("ip_denied", "source address not allowed", status=403)
        adapter.verify(request)
        decoded = adapter.decode(request)
        if decoded.kind == "challenge" and decoded.response is not None:
            return decoded.response
        await self.submit(adapter.name, decoded.messages)
        return adapter.ack(request, decoded)

    async def submit(self, platform: str, messages: Sequence[InboundMessage]) -> int:
        """Queue messages durably, skipping re-deliveries; returns how many were new.

        Also the entry for messages that arrive over a platform's own connection (QQ's gateway).
        """
        admitted = 0
        for message in messages:
            if await self.queue.admit(message, traceparent()):
                admitted += 1
            else:
                self.metrics.duplicates.labels(platform).inc()
        if admitted:
            self.on_admitted()
        return admitted

