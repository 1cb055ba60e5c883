"""Delivery workers: take a queued message, answer it with the model, send the reply, retry or bury."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing

from opentelemetry.trace import SpanKind, Tracer

from bot.conversation import Conversation
from bot.delivery.base import InboundQueue, Job
from bot.delivery.horizon import RetryHorizon
from bot.delivery.retry import RetryPolicy
from bot.delivery.shaping import OutboundShaper
from bot.errors import BackendBadResponse, BackendError, DependencyUnavailable
from bot.messages import Completion, Reply
from bot.platforms.base import DeliveryFailed, OutboundLimit, OutboundLimited, PlatformAdapter, StreamedReplies
from bot.telemetry.metrics import BotMetrics
from servicekit.tracing import propagator

log = logging.getLogger("bot.delivery")

FALLBACK_REPLY = "Sorry, I cannot answer right now. Please try again in a few minutes."
# Shown after a reply's text while the model is still writing it.
STILL_WRITING = " …"
# No platform takes edits of one message faster than about once a second; the shaper's budgets decide beyond that.
STREAM_UPDATE_INTERVAL = 1.0


class DeliveryWorkers:
    """Claims queued messages while a model slot is free and answers each in its own task.

    Capacity is the model's concurrency, not a pool of workers: a job is claimed only once a
    model call for it can start, so a backlog waits in the durable queue (where its age is
    measured) rather than in memory, and a claimed job never sits on its lease waiting for a
    slot. The send that follows releases the model slot first; it is bounded by the platforms'
    sending budgets (the shaper) and by `max_jobs`, which keeps a platform that hangs from
    holding unlimited claimed jobs.
    """

    def __init__(
        self,
        queue: InboundQueue,
        adapters: Mapping[str, PlatformAdapter],
        conversation: Conversation,
        metrics: BotMetrics,
        tracer: Tracer,
        *,
        policy: RetryPolicy,
        model_concurrency: int = 256,
        max_jobs: int | None = None,
        claimers: int = 4,
        lease_seconds: float = 120.0,
        poll_interval: float = 0.5,
        shaper: OutboundShaper | None = None,
        horizon: RetryHorizon | None = None,
        rate_limit_patience: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.adapters = adapters
        self.conversation = conversation
        self.metrics = metrics
        self.tracer = tracer
        self.policy = policy
        self.model_concurrency = model_concurrency
        self.max_jobs = max_jobs if max_jobs is not None else 2 * model_concurrency
        self.claimers = claimers
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.shaper = shaper
        self.horizon = horizon or RetryHorizon()
        # How long a message may wait for a model that answers 429 before the fallback reply goes out.
        self.rate_limit_patience = rate_limit_patience
        self._clock = clock
        self._model_slots = asyncio.Semaphore(model_concurrency)
        self._job_slots = asyncio.Semaphore(self.max_jobs)
        self._wake = asyncio.Event()
        self._claimer_tasks: list[asyncio.Task[None]] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self._reporter: asyncio.Task[None] | None = None
        # Jobs delivered whose completion the store has not taken yet (kept in memory: see _remember_unrecorded).
        self._unrecorded: set[str] = set()
        self._recorders: set[asyncio.Task[None]] = set()
        self.record_retry_interval = 1.0
        self._stopping = False
        self._queue_down = False

    def notify(self) -> None:
        """A message was admitted: claim it now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._claimer_tasks = [
            asyncio.create_task(self._claim_loop(), name=f"delivery-claim-{i}") for i in range(self.claimers)
        ]
        self._reporter = asyncio.create_task(self._report_depth(), name="delivery-depth")

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, let jobs in progress finish (bounded); unfinished ones stay queued for the next start."""
        self._stopping = True
        self._wake.set()
        for task in self._claimer_tasks:
            task.cancel()
        pending: set[asyncio.Task[None]] = {self._reporter} if self._reporter else set()
        if self._jobs:
            pending |= (await asyncio.wait(set(self._jobs), timeout=timeout))[1]
        for task in [*self._claimer_tasks, *pending, *self._recorders]:
            task.cancel()
        for task in [*self._claimer_tasks, *pending, *self._recorders]:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _claim_loop(self) -> None:
        while not self._stopping:
            await self._job_slots.acquire()
            await self._model_slots.acquire()
            # Cleared before the claim, not after: a message admitted while the claim runs either
            # is found by it or sets the event again, so no wake-up is lost between claimers.
            self._wake.clear()
            job = await self._claim()
            if job is None:
                self._model_slots.release()
                self._job_slots.release()
                if self._stopping:
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                continue
            # A job whose reply was saved before (a retry) needs no model call.
            slot = _Slot(self._model_slots, held=job.reply_text is None)
            if not slot.held:
                self._model_slots.release()
            task = asyncio.create_task(self._run_job(job, slot), name=f"delivery-{job.id[:8]}")
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)

    async def _claim(self) -> Job | None:
        try:
            job = await self.queue.claim(self.lease_seconds)
        except DependencyUnavailable as exc:
            self._queue_state(down=True, reason=exc.message)
            return None
        self._queue_state(down=False)
        return job

    async def _run_job(self, job: Job, slot: _Slot) -> None:
        try:
            await self.process(job, slot)
        except Exception:
            # A bug must not stop delivery; the lease expires and the job is retried.
            log.exception("delivery failed on a job", extra={"labels.job_id": job.id})
        finally:
            slot.release()
            self._job_slots.release()

    def _queue_state(self, *, down: bool, reason: str = "") -> None:
        # Logged on change only: every claimer polls, and an outage would otherwise flood the logs.
        if down == self._queue_down:
            return
        self._queue_down = down
        if down:
            log.warning("queue unavailable, delivery keeps retrying: %s", reason)
        else:
            log.info("queue available again, delivery resumes")

    async def process(self, job: Job, slot: _Slot | None = None) -> None:
        """Answer one job: reuse a saved reply, else ask the model; then send, retry or bury.

        `slot` is the model slot claimed for the job; it is given back as soon as the model answered.
        """
        message = job.message
        adapter = self.adapters.get(message.platform)
        parent = propagator.extract({"traceparent": job.traceparent}) if job.traceparent else None
        with self.tracer.start_as_current_span("deliver", context=parent, kind=SpanKind.CONSUMER) as span:
            span.set_attribute("messaging.destination.name", message.platform)
            if adapter is None:
                await self._bury(job, f"platform {message.platform} is not enabled")
                return
            if job.id in self._unrecorded:
                # Sent while the store could not record it; its lease ran out before the store came back.
                if slot is not None:
                    slot.release()
                await self._record_delivery(job.id)
                return
            text = job.reply_text
            model_seconds = 0.0
            stream = _ReplyStream(job.stream_handle)
            if text is None:
                started = time.perf_counter()
                try:
                    answer = await self._answer(job, adapter, stream)
                finally:
                    model_seconds = time.perf_counter() - started
                    if slot is not None:
                        slot.release()
                if isinstance(answer, float):
                    await self.queue.defer(job.id, answer)
                    span.add_event("model rate limited, back to the queue")
                    return
                text = answer
                await self.queue.save_reply(job.id, text)
            reply = Reply(message, text)
            if await self._shaped(job, adapter, reply):
                span.add_event("outbound shaped")
                return
            try:
                with self.tracer.start_as_current_span("platform.send", kind=SpanKind.CLIENT):
                    if stream.handle is not None and isinstance(adapter, StreamedReplies):
                        # The reply was streamed into a message (maybe by a process that crashed): finish
                        # that message rather than sending a second one.
                        await adapter.update_reply(reply, stream.handle)
                    else:
                        await adapter.send(reply)
            except DeliveryFailed as exc:
                await self._failed(job, exc, adapter)
                return
            self.metrics.delivery_attempts.labels(message.platform, "delivered").inc()
            elapsed = max(0.0, self._clock() - message.received_at)
            self.metrics.reply_duration.labels(message.platform).observe(elapsed)
            # A retried reply's model call happened in an earlier attempt: its whole wait counts as the bot's.
            self.metrics.reply_overhead.labels(message.platform).observe(max(0.0, elapsed - model_seconds))
            log.info("reply delivered", extra={"labels.platform": message.platform, "event.outcome": "success"})
            try:
                await self.queue.complete(job.id)
            except DependencyUnavailable as exc:
                self._remember_unrecorded(job.id, exc.message)

    def _remember_unrecorded(self, job_id: str, reason: str) -> None:
        """The platform has the reply but the store could not mark the job done (a full disk, Redis away).

        The job must not be sent again when its lease runs out: it is remembered here and its
        completion retried every second until the store takes it.
        """
        log.warning("reply of job %s delivered but not recorded, recording it again until the store takes it: %s",
                    job_id, reason, extra={"labels.job_id": job_id})
        self._unrecorded.add(job_id)
        task = asyncio.create_task(self._record_later(job_id), name=f"record-{job_id[:8]}")
        self._recorders.add(task)
        task.add_done_callback(self._recorders.discard)

    async def _record_later(self, job_id: str) -> None:
        while job_id in self._unrecorded and not self._stopping:
            await asyncio.sleep(self.record_retry_interval)
            await self._record_delivery(job_id)

    async def _record_delivery(self, job_id: str) -> None:
        try:
            await self.queue.complete(job_id)
        except DependencyUnavailable:
            return
        if job_id in self._unrecorded:
            self._unrecorded.discard(job_id)
            log.info("delivery of job %s recorded", job_id, extra={"labels.job_id": job_id})

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

    async def _answer(self, job: Job, adapter: PlatformAdapter, stream: _ReplyStream) -> str | float:
        """The reply text, or the seconds to wait in the queue while the model asks us to slow down."""
        limits = adapter.update_limits(job.message) if isinstance(adapter, StreamedReplies) else None
        try:
            if limits is not None and isinstance(adapter, StreamedReplies):
                return await self._streamed_answer(job, adapter, limits, stream)
            completion = await self.conversation.respond(job.message.session_key, job.message.text)
        except BackendError as exc:
            waited = self._clock() - job.message.received_at
            if exc.rate_limited and waited < self.rate_limit_patience:
                delay = float(max(0.5, exc.retry_after or 1.0))
                log.info("model rate limited, job %s waits %.1fs in the queue", job.id, delay,
                         extra={"labels.job_id": job.id, "error.code": exc.code})
                return delay
            # The user hears something now rather than nothing; the failure is counted by the model metrics.
            log.warning("model failed, sending the fallback reply: %s", exc.code, extra={"error.code": exc.code})
            return FALLBACK_REPLY
        return completion.text

    async def _streamed_answer(
        self, job: Job, adapter: StreamedReplies, limits: Sequence[OutboundLimit], stream: _ReplyStream
    ) -> str:
        """Answer while showing the reply grow: a first message early, then edits the budgets allow.

        The finished text is not sent here: it goes out like any reply (shaped, retried), as
        an update of the streamed message. Intermediate updates are best effort: one the
        budgets have no room for is skipped, and a failed one stops the updates.
        """
        message = job.message
        parts: list[str] = []
        async with aclosing(self.conversation.respond_stream(message.session_key, message.text)) as answer:
            async for item in answer:
                if isinstance(item, Completion):
                    return item.text
                parts.append(item)
                now = time.monotonic()
                if stream.broken or now - stream.updated_at < STREAM_UPDATE_INTERVAL:
                    continue
                if self.shaper is not None and await self.shaper.acquire(limits) > 0:
                    continue
                partial = Reply(message, "".join(parts) + STILL_WRITING, partial=True)
                try:
                    if stream.handle is None:
                        stream.handle = await adapter.begin_reply(partial)
                        shown_after = max(0.0, self._clock() - message.received_at)
                        await self.queue.save_stream_handle(job.id, stream.handle)
                        # Counted once the message is known to the queue: a retry finishes it, never sends another.
                        self.metrics.first_token.labels(message.platform).observe(shown_after)
                    else:
                        await adapter.update_reply(partial, stream.handle)
                except (DeliveryFailed, DependencyUnavailable) as exc:
                    stream.broken = True
                    log.info("streaming the reply stopped, the whole reply follows: %s", exc,
                             extra={"labels.platform": message.platform, "labels.job_id": job.id})
                stream.updated_at = now
        raise BackendBadResponse("the model's answer ended without its completion")

    async def _failed(self, job: Job, exc: DeliveryFailed, adapter: PlatformAdapter | None = None) -> None:
        """Retry while the reply is still worth sending (the horizon), else bury it with the reason."""
        message = job.message
        platform = message.platform
        attempt = job.attempts + 1
        log_extra = {"labels.platform": platform, "labels.job_id": job.id, "labels.attempt": attempt,
                     "event.outcome": "failure"}
        if not exc.retryable:
            self.metrics.delivery_attempts.labels(platform, "failed").inc()
            await self._bury(job, exc.reason, attempt)
            return
        horizon, source = self.horizon.for_message(message, adapter)
        # The backoff reaches its cap long before 60 doublings; past them 2**n would only overflow.
        delay = self.policy.delay(min(job.attempts, 60), exc.retry_after)
        age_then = self._clock() + delay - message.received_at
        if self.policy.exhausted(attempt) or age_then > horizon:
            self.metrics.delivery_attempts.labels(platform, "failed").inc()
            if age_then > horizon:
                why = f"{source} of {horizon:g}s would pass before attempt {attempt + 1}"
            else:
                why = f"gave up after {attempt} attempts (DELIVERY_MAX_ATTEMPTS)"
            await self._bury(job, f"{why}; last error: {exc.reason}", attempt)
            return
        self.metrics.delivery_attempts.labels(platform, "retry").inc()
        log.warning("delivery attempt %d of job %s failed, retrying in %.1fs: %s", attempt, job.id, delay, exc.reason,
                    extra=log_extra)
        await self.queue.retry(job.id, delay, exc.reason)

    async def _bury(self, job: Job, reason: str, attempt: int | None = None) -> None:
        platform = job.message.platform
        self.metrics.dead_letters.labels(platform).inc()
        log.error("reply of job %s moved to dead letters: %s", job.id, reason,
                  extra={"labels.platform": platform, "labels.job_id": job.id,
                         "labels.attempt": attempt if attempt is not None else job.attempts + 1,
                         "event.outcome": "failure"})
        await self.queue.bury(job.id, reason)

    async def _report_depth(self) -> None:
        while not self._stopping:
            with contextlib.suppress(DependencyUnavailable):
                for name, value in (await self.queue.depth()).items():
                    self.metrics.queue_depth.labels(name).set(value)
                since = await self.queue.oldest_waiting_since()
                age = 0.0 if since is None else max(0.0, self._clock() - since)
                self.metrics.queue_oldest_age.labels("inbound").set(age)
            await asyncio.sleep(1.0)


class _ReplyStream:
    """Where a streamed reply stands: the platform message it goes into, and when it was last updated."""

    __slots__ = ("broken", "handle", "updated_at")

    def __init__(self, handle: str | None) -> None:
        self.handle = handle
        self.updated_at = float("-inf")
        self.broken = False


class _Slot:
    """A semaphore permit released at most once, whichever step finishes with it first."""

    __slots__ = ("_semaphore", "held")

    def __init__(self, semaphore: asyncio.Semaphore, *, held: bool) -> None:
        self._semaphore = semaphore
        self.held = held

    def release(self) -> None:
        if self.held:
            self.held = False
            self._semaphore.release()
