"""One conversational step: session in, model call, session out, with the model's telemetry."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing, nullcontext

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer
from prometheus_client import Histogram

from bot.backends.base import ModelBackend, StreamItem, stream_answer
from bot.errors import BackendError
from bot.messages import Completion, Turn
from bot.sessions.base import SessionStore
from bot.telemetry.metrics import BotMetrics
from servicekit.tracing import exemplar


class Conversation:
    """Answers a user's message in the context of their earlier turns."""

    def __init__(
        self,
        sessions: SessionStore,
        backend: ModelBackend,
        metrics: BotMetrics,
        tracer: Tracer,
        *,
        max_turns: int = 20,
        system_prompt: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.backend = backend
        self.metrics = metrics
        self.tracer = tracer
        # Kept as user+assistant pairs, so a trimmed history never starts with an orphan answer.
        self.max_messages = max_turns * 2
        self.system_prompt = system_prompt
        name = backend.name
        self._ok = metrics.model_requests.labels(name, "success")
        self._duration = metrics.model_duration.labels(name)
        self._in_flight = metrics.model_in_flight.labels(name)
        self._prompt_tokens = metrics.model_tokens.labels(name, "prompt")
        self._completion_tokens = metrics.model_tokens.labels(name, "completion")

    async def respond(self, session_key: str, text: str) -> Completion:
        """Answer `text`, remembering both sides under `session_key`."""
        history = await self.sessions.load(session_key)
        turns = list(history)
        turns.append(Turn("user", text))
        prompt = [Turn("system", self.system_prompt), *turns] if self.system_prompt else turns
        completion = await self._complete(prompt)
        turns.append(Turn("assistant", completion.text))
        await self.sessions.save(session_key, turns[-self.max_messages :])
        return completion

    async def respond_stream(self, session_key: str, text: str) -> AsyncGenerator[StreamItem, None]:
        """Answer `text` piece by piece, then yield the Completion; the session keeps only a whole turn.

        Close the iterator (`contextlib.aclosing`) when leaving early: the model call ends with it.
        """
        history = await self.sessions.load(session_key)
        turns = list(history)
        turns.append(Turn("user", text))
        prompt = [Turn("system", self.system_prompt), *turns] if self.system_prompt else turns
        async with aclosing(self._stream(prompt)) as stream:
            async for item in stream:
                if isinstance(item, Completion):
                    turns.append(Turn("assistant", item.text))
                    await self.sessions.save(session_key, turns[-self.max_messages :])
                yield item

    async def _stream(self, prompt: list[Turn]) -> AsyncGenerator[StreamItem, None]:
        name = self.backend.name
        started = time.perf_counter()
        first_at: float | None = None
        # Not made current: a span attached across yields would be detached in whatever context
        # the consumer happens to close the stream from.
        span = self.tracer.start_span("model.stream", kind=SpanKind.CLIENT) if (
            trace.get_current_span().is_recording()) else None
        if span is not None:
            span.set_attribute("gen_ai.system", name)
        self._in_flight.inc()
        try:
            async with aclosing(stream_answer(self.backend, prompt)) as stream:
                async for item in stream:
                    if isinstance(item, Completion):
                        answered = item.backend or name
                        if span is not None:
                            span.set_attribute("model.backend", answered)
                        finished = time.perf_counter()
                        self._record_success(answered, finished - started, item)
                        self.metrics.model_first_token.labels(answered).observe(
                            (first_at if first_at is not None else finished) - started)
                    elif first_at is None:
                        first_at = time.perf_counter()
                    yield item
        except BackendError as exc:
            failed = exc.backend or name
            if span is not None:
                span.set_attribute("model.backend", failed)
                span.set_attribute("error.type", exc.code)
            self.metrics.model_requests.labels(failed, exc.code).inc()
            self._duration_of(failed).observe(time.perf_counter() - started)
            raise
        finally:
            self._in_flight.dec()
            if span is not None:
                span.end()

    async def _complete(self, prompt: list[Turn]) -> Completion:
        name = self.backend.name
        started = time.perf_counter()
        # A child span only when the request's trace is recorded: an unsampled one would cost
        # time on every request and show nowhere.
        recording = trace.get_current_span().is_recording()
        scope = self.tracer.start_as_current_span("model.complete", kind=SpanKind.CLIENT) if recording else nullcontext()
        with scope as span:
            if span is not None:
                span.set_attribute("gen_ai.system", name)
            self._in_flight.inc()
            try:
                completion = await self.backend.complete(prompt)
            except BackendError as exc:
                failed = exc.backend or name
                if span is not None:
                    span.set_attribute("model.backend", failed)
                self.metrics.model_requests.labels(failed, exc.code).inc()
                self._duration_of(failed).observe(time.perf_counter() - started)
                raise
            finally:
                self._in_flight.dec()
            answered = completion.backend or name
            if span is not None:
                span.set_attribute("model.backend", answered)
            self._record_success(answered, time.perf_counter() - started, completion)
            return completion

    def _duration_of(self, backend: str) -> Histogram:
        return self._duration if backend == self.backend.name else self.metrics.model_duration.labels(backend)

    def _record_success(self, backend: str, seconds: float, completion: Completion) -> None:
        """Time, count and the tokens of an answer, under the backend that gave it."""
        if backend == self.backend.name:
            ok, prompt_tokens, completion_tokens = self._ok, self._prompt_tokens, self._completion_tokens
        else:
            ok = self.metrics.model_requests.labels(backend, "success")
            prompt_tokens = self.metrics.model_tokens.labels(backend, "prompt")
            completion_tokens = self.metrics.model_tokens.labels(backend, "completion")
        self._duration_of(backend).observe(seconds, exemplar())
        ok.inc()
        prompt_tokens.inc(completion.prompt_tokens)
        completion_tokens.inc(completion.completion_tokens)
