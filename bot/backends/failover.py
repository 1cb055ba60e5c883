"""A chain of model endpoints: when one fails, the next answers, and the failed one cools down."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import replace

from opentelemetry import trace

from bot.backends.base import ModelBackend, StreamItem, stream_answer
from bot.errors import BackendBadResponse, BackendError, BackendUnavailable
from bot.messages import Completion, Turn

# Told about every endpoint that failed and was passed over (its name, the error), for the metrics.
FailoverObserver = Callable[[str, BackendError], None]


class FailoverBackend:
    """Tries its backends in order, passing over those that failed within the cool-down.

    Each backend keeps its own retries and circuit breaker; this only decides who is asked
    next. A failure that blames the request (400, 413, 422) is raised at once: another
    endpoint would refuse the same prompt, and the endpoint that said so is healthy.
    """

    def __init__(
        self,
        backends: Sequence[ModelBackend],
        *,
        cooldown: float = 30.0,
        on_failover: FailoverObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ValueError("a failover chain needs at least one backend")
        self.backends = tuple(backends)
        # The chain carries the primary's name: in-flight and concurrency gauges are the chain's.
        self.name = self.backends[0].name
        self.cooldown = cooldown
        self._on_failover = on_failover
        self._clock = clock
        self._failed_at: dict[str, float] = {}

    def cooling(self, name: str) -> bool:
        """Is this backend within its cool-down after a failure?"""
        failed_at = self._failed_at.get(name)
        return failed_at is not None and self._clock() - failed_at < self.cooldown

    def order(self) -> list[ModelBackend]:
        """Who to ask, in turn: backends not cooling down in configured order, then the cooling ones.

        A cooling backend is still asked when every other one failed too: a cool-down steers
        traffic away, it never silences the bot while some endpoint might answer.
        """
        ready = [b for b in self.backends if not self.cooling(b.name)]
        cooling = sorted((b for b in self.backends if self.cooling(b.name)), key=lambda b: self._failed_at[b.name])
        return ready + cooling

    async def complete(self, turns: Sequence[Turn]) -> Completion:
        failures: list[tuple[ModelBackend, BackendError]] = []
        for backend in self.order():
            try:
                completion = await backend.complete(turns)
            except BackendError as exc:
                exc.backend = backend.name
                if exc.blames_request:
                    self._report(failures)
                    raise
                self._failed_at[backend.name] = self._clock()
                failures.append((backend, exc))
                continue
            self._failed_at.pop(backend.name, None)
            self._report(failures)
            return replace(completion, backend=backend.name)
        raise self._give_up(failures)

    async def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[StreamItem, None]:
        """Stream from the first backend that starts answering; once text flowed, a failure is final."""
        failures: list[tuple[ModelBackend, BackendError]] = []
        for backend in self.order():
            started = False
            try:
                async with aclosing(stream_answer(backend, turns)) as stream:
                    async for item in stream:
                        if isinstance(item, Completion):
                            self._failed_at.pop(backend.name, None)
                            self._report(failures)
                            yield replace(item, backend=backend.name)
                            return
                        if not started:
                            started = True
                            self._report(failures)
                            failures = []
                        yield item
            except BackendError as exc:
                exc.backend = backend.name
                if exc.blames_request:
                    self._report(failures)
                    raise
                self._failed_at[backend.name] = self._clock()
                if started:
                    # Half an answer was already handed out: another model's answer cannot continue it.
                    raise
                failures.append((backend, exc))
                continue
            raise BackendBadResponse("model stream ended without its completion")
        raise self._give_up(failures)

    def _report(self, failures: list[tuple[ModelBackend, BackendError]]) -> None:
        """Count and trace the endpoints passed over on the way to an answer (or the last error)."""
        span = trace.get_current_span()
        for backend, exc in failures:
            span.add_event("model.failover", {"model.backend": backend.name, "error.type": exc.code})
            if self._on_failover is not None:
                self._on_failover(backend.name, exc)

    def _give_up(self, failures: list[tuple[ModelBackend, BackendError]]) -> BackendError:
        """Every backend failed: raise one error, and report the others as passed over.

        A rate-limited endpoint is up, so its error is the one raised: the queue may wait for
        it. Otherwise the primary's error, which names the usual cause.
        """
        chosen = next((f for f in failures if f[1].rate_limited), failures[0])
        self._report([f for f in failures if f is not chosen])
        return chosen[1]

    async def check(self) -> None:
        """Ready while any backend can serve."""
        errors: list[BackendError] = []
        for backend in self.backends:
            try:
                await backend.check()
                return
            except BackendError as exc:
                errors.append(exc)
        raise BackendUnavailable("no model endpoint can serve: " + "; ".join(e.message for e in errors))
