"""Delivery workers: take a queued message, answer it with the model, send the reply, retry or bury."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from opentelemetry.trace import SpanKind, Tracer

from bot.conversation import Conversation
from bot.delivery.base import InboundQueue, Job
from bot.delivery.retry import RetryPolicy
from bot.delivery.shaping import OutboundShaper
from bot.errors import BackendError, DependencyUnavailable
from bot.messages import Reply
from bot.platforms.base import DeliveryFailed, OutboundLimited, PlatformAdapter
from bot.telemetry.metrics import BotMetrics
from servicekit.tracing import propagator

log = logging.getLogger("bot.delivery")

FALLBACK_REPLY = "Sorry, I cannot answer right now. Please try again in a few minutes."


class DeliveryWorkers:
    """A fixed pool of tasks draining the queue; woken at once on enqueue, polling for retries."""

    def __init__(
        self,
        queue: InboundQueue,
        adapters: Mapping[str, PlatformAdapter],
        conversation: Conversation,
        metrics: BotMetrics,
        tracer: Tracer,
        *,
        policy: RetryPolicy,
        concurrency: int = 8,
        lease_seconds: float = 120.0,
        poll_interval: float = 0.5,
        shaper: OutboundShaper | None = None,
    ) -> None:
        self.queue = queue
        self.adapters = adapters
        self.conversation = conversation
        self.metrics = metrics
        self.tracer = tracer
        self.policy = policy
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.shaper = shaper
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reporter: asyncio.Task[None] | None = None
        self._stopping = False
        self._queue_down = False

    def notify(self) -> None:
        """A message was admitted: wake an idle worker now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"delivery-{i}") for i in range(self.concurrency)]
        self._reporter = asyncio.create_task(self._report_depth(), name="delivery-depth")

    async def stop(self, timeout: float = 10.0) -> None:
        """Let jobs in progress finish (bounded); unfinished ones stay queued for the next start."""
        self._stopping = True
        self._wake.set()
        pending: set[asyncio.Task[None]] = {self._reporter} if self._reporter else set()
        if self._tasks:
            pending |= (await asyncio.wait(self._tasks, timeout=timeout))[1]
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._stopping:
            try:
                job = await self.queue.claim(self.lease_seconds)
            except DependencyUnavailable as exc:
                self._queue_state(down=True, reason=exc.message)
                job = None
            else:
                self._queue_state(down=False)
            if job is None:
                if self._stopping:
                    return
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                continue
            try:
                await self.process(job)
            except Exception:
                # A bug must not kill the worker; the lease expires and the job is retried.
                log.exception("delivery worker failed on a job")

    def _queue_state(self, *, down: bool, reason: str = "") -> None:
        # Logged on change only: every worker polls, and an outage would otherwise flood the logs.
        if down == self._queue_down:
            return
        self._queue_down = down
        if down:
            log.warning("queue unavailable, workers keep retrying: %s", reason)
        else:
            log.info("queue available again, delivery resumes")

    async def process(self, job: Job) -> None:
        """Answer one job: reuse a saved reply, else ask the model; then send, retry or bury."""
        message = job.message
        adapter = self.adapters.get(message.platform)
        parent = propagator.extract({"traceparent": job.traceparent}) if job.traceparent else None
        with self.tracer.start_as_current_span("deliver", context=parent, kind=SpanKind.CONSUMER) as span:
            span.set_attribute("messaging.destination.name", message.platform)
            if adapter is None:
                await self._bury(job, f"platform {message.platform} is not enabled")
                return
            text = job.reply_text
            if text is None:
                text = await self._answer(job)
                await self.queue.save_reply(job.id, text)
            reply = Reply(message, text)
            if await self._shaped(job, adapter, reply):
                span.add_event("outbound shaped")
                return
            try:
                with self.tracer.start_as_current_span("platform.send", kind=SpanKind.CLIENT):
                    await adapter.send(reply)
            except DeliveryFailed as exc:
                await self._failed(job, exc)
                return
            await self.queue.complete(job.id)
            self.metrics.delivery_attempts.labels(message.platform, "delivered").inc()
            self.metrics.reply_duration.labels(message.platform).observe(max(0.0, time.time() - message.received_at))
            log.info("reply delivered", extra={"labels.platform": message.platform, "event.outcome": "success"})

    async def _shaped(self, job: Job, adapter: PlatformAdapter, reply: Reply) -> bool:
        """Hold the reply back (not an attempt) while a platform sending budget it draws on is spent."""
        if self.shaper is None or not isinstance(adapter, OutboundLimited):
            return False
        delay = await self.shaper.acquire(adapter.outbound_limits(reply))
        if delay <= 0:
            return False
        self.metrics.outbound_shaped.labels(reply.inbound.platform).inc()
        log.debug("reply held back %.2fs for the platform's sending budget", delay,
                  extra={"labels.platform": reply.inbound.platform})
        await self.queue.defer(job.id, delay)
        return True

    async def _answer(self, job: Job) -> str:
        try:
            completion = await self.conversation.respond(job.message.session_key, job.message.text)
        except BackendError as exc:
            # The user hears something now rather than nothing; the failure is counted by the model metrics.
            log.warning("model failed, sending the fallback reply: %s", exc.code, extra={"error.code": exc.code})
            return FALLBACK_REPLY
        return completion.text

    async def _failed(self, job: Job, exc: DeliveryFailed) -> None:
        platform = job.message.platform
        attempts = job.attempts + 1
        if exc.retryable and not self.policy.exhausted(attempts):
            self.metrics.delivery_attempts.labels(platform, "retry").inc()
            delay = self.policy.delay(job.attempts, exc.retry_after)
            log.warning("delivery failed, retrying in %.1fs: %s", delay, exc.reason,
                        extra={"labels.platform": platform, "event.outcome": "failure"})
            await self.queue.retry(job.id, delay, exc.reason)
            return
        self.metrics.delivery_attempts.labels(platform, "failed").inc()
        await self._bury(job, exc.reason)

    async def _bury(self, job: Job, reason: str) -> None:
        platform = job.message.platform
        self.metrics.dead_letters.labels(platform).inc()
        log.error("reply moved to dead letters: %s", reason,
                  extra={"labels.platform": platform, "labels.job_id": job.id, "event.outcome": "failure"})
        await self.queue.bury(job.id, reason)

    async def _report_depth(self) -> None:
        while not self._stopping:
            with contextlib.suppress(DependencyUnavailable):
                for name, value in (await self.queue.depth()).items():
                    self.metrics.queue_depth.labels(name).set(value)
            await asyncio.sleep(1.0)
