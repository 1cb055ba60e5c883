"""A backend for any endpoint that speaks the OpenAI chat-completions protocol."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from bot.backends.base import StreamItem
from bot.backends.circuit import CircuitBreaker
from bot.backends.sse import sse_data
from bot.errors import BackendBadResponse, BackendError, BackendTimeout, BackendUnavailable
from bot.messages import Completion, Turn
from servicekit.backoff import backoff_delay
from servicekit.retry_after import parse_retry_after

T = TypeVar("T")
log = logging.getLogger("bot.backends")
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# Refusals of the request itself (too long, malformed): no other endpoint would take it either.
REQUEST_FAULTS = frozenset({400, 413, 422})


def estimate_tokens(text: str) -> int:
    """A cheap, tokenizer-free estimate: ~4 ASCII chars a token, one token per other char."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars) + 4


def fit_history(turns: Sequence[Turn], budget: int) -> list[Turn]:
    """Drop the oldest non-system turns until the estimate fits; the last turn always stays."""
    kept = list(turns)
    system = [t for t in kept if t.role == "system"]
    rest = [t for t in kept if t.role != "system"]
    used = sum(estimate_tokens(t.content) for t in kept)
    while used > budget and len(rest) > 1:
        used -= estimate_tokens(rest.pop(0).content)
    return system + rest


class OpenAICompatBackend:
    """Calls `<MODEL_ENDPOINT>/chat/completions` with retries and a circuit breaker."""

    name = "openai_compat"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: str,
        api_key: str | None,
        model: str,
        *,
        name: str = "openai_compat",
        max_token_limit: int = 2048,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        retry_max_delay: float = 8.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.name = name
        base = endpoint.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.models_url = self.url.rsplit("/chat/completions", 1)[0] + "/models"
        self._session = session
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.model = model
        self.max_token_limit = max_token_limit
        # Leave at least half the window for the prompt; a quarter is plenty for chat replies.
        self.max_reply_tokens = max(16, max_token_limit // 4)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        # A stream has no total limit (a long answer that keeps coming is fine): `timeout` bounds the
        # time to the first token and every gap between chunks instead.
        self.stream_timeout = timeout
        self._stream_client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self.max_retries = max_retries
        self.retry_max_delay = retry_max_delay
        self.breaker = breaker or CircuitBreaker(threshold=5, reset_after=30.0)

    def build_payload(self, turns: Sequence[Turn]) -> dict[str, Any]:
        history = fit_history(turns, self.max_token_limit - self.max_reply_tokens)
        return {
            "model": self.model,
            "messages": [turn.to_dict() for turn in history],
            "max_tokens": self.max_reply_tokens,
        }

    async def complete(self, turns: Sequence[Turn]) -> Completion:
        if not self.breaker.allow():
            raise BackendUnavailable("model circuit is open", retry_after=self.breaker.retry_after())
        body = orjson.dumps(self.build_payload(turns))
        completion = await self._retrying(lambda: self._call_once(body))
        self.breaker.record_success()
        return completion

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call`, retrying what `_retry_delay` allows; a final failure counts against the breaker."""
        attempt = 0
        while True:
            try:
                return await call()
            except BackendError as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    # A model that asks us to slow down is up: opening the circuit would answer
                    # everyone with the fallback while the queue could simply wait for it.
                    if not exc.rate_limited:
                        self.breaker.record_failure()
                    raise
                attempt += 1
                await asyncio.sleep(delay)

    async def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[StreamItem, None]:
        """Ask for `stream: true` and hand out the answer as its chunks arrive."""
        if not self.breaker.allow():
            raise BackendUnavailable("model circuit is open", retry_after=self.breaker.retry_after())
        payload = self.build_payload(turns)
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
        body = orjson.dumps(payload)
        reader, first = await self._retrying(lambda: self._open_stream(body))
        finished = failed = False
        try:
            piece = first
            while piece is not None:
                yield piece
                try:
                    async with asyncio.timeout(self.stream_timeout):
                        piece = await reader.next_text()
                except TimeoutError as exc:
                    raise BackendTimeout("model stream stalled between chunks") from exc
                except (aiohttp.ClientError, ValueError) as exc:
                    raise BackendUnavailable("model stream broke off") from exc
            await reader.drain(self.stream_timeout)
            finished = True
        except BackendError:
            failed = True
            self.breaker.record_failure()
            raise
        finally:
            if not finished:
                reader.abandon()
                if not failed:
                    # The caller stopped reading (a client hung up); the endpoint was answering.
                    self.breaker.record_success()
        self.breaker.record_success()
        yield reader.completion()

    async def _open_stream(self, body: bytes) -> tuple[_CompletionStream, str | None]:
        """Send the request and wait for the first piece of text, all within the first-token time."""
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(self.stream_timeout):
                resp = await self._session.post(
                    self.url, data=body, headers=self._headers, timeout=self._stream_client_timeout,
                )
                if resp.status >= 400:
                    await resp.read()
                    if resp.status == 404:
                        log.warning("model endpoint %s answered 404: MODEL_ENDPOINT must be the API base",
                                    loggable_url(self.url))
                    raise _status_error(resp.status, resp.headers.get("Retry-After"))
                reader = _CompletionStream(resp)
                if resp.content_type == "application/json":
                    # An endpoint that ignores `stream` answers in one piece; take it as such.
                    reader.take_whole(_parse_completion(await resp.read()))
                return reader, await reader.next_text()
        except BaseException as exc:
            # Whatever ends the attempt (a caller hanging up included) drops its half-read connection.
            if resp is not None:
                resp.close()
            if isinstance(exc, TimeoutError):
                raise BackendTimeout("model endpoint sent no first token in time", retryable=True) from exc
            if isinstance(exc, aiohttp.ClientError | ValueError):
                raise BackendUnavailable("model endpoint unreachable", retryable=True) from exc
            raise

    def _retry_delay(self, exc: BackendError, attempt: int) -> float | None:
        """How long to wait before the next try, or None to give up."""
        if not exc.retryable or attempt >= self.max_retries:
            return None
        backoff = backoff_delay(attempt, 0.25, self.retry_max_delay)
        if exc.retry_after is None:
            return backoff
        # A server asking for longer than we are willing to wait gets a clear 503 now.
        return exc.retry_after if exc.retry_after <= self.retry_max_delay else None

    async def _call_once(self, body: bytes) -> Completion:
        try:
            async with self._session.post(self.url, data=body, headers=self._headers, timeout=self._timeout) as resp:
                raw = await resp.read()
                if resp.status == 404:
                    log.warning(
                        "model endpoint %s answered 404: MODEL_ENDPOINT must be the API base, the part "
                        "before /chat/completions (e.g. https://api.openai.com/v1)", loggable_url(self.url),
                    )
                if resp.status >= 400:
                    raise _status_error(resp.status, resp.headers.get("Retry-After"))
        except asyncio.TimeoutError as exc:
            raise BackendTimeout("model endpoint timed out", retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise BackendUnavailable("model endpoint unreachable", retryable=True) from exc
        return _parse_completion(raw)

    async def check(self) -> None:
        """The endpoint answers HTTP at all (any status below 500 counts)."""
        try:
            async with self._session.get(
                self.models_url, headers=self._headers, timeout=aiohttp.ClientTimeout(total=2.0)
            ) as resp:
                if resp.status >= 500:
                    raise BackendUnavailable(f"model endpoint answered HTTP {resp.status}")
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise BackendUnavailable("model endpoint unreachable") from exc


def loggable_url(url: str) -> str:
    """The URL without credentials or query, which may carry a key."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _status_error(status: int, retry_after_header: str | None) -> BackendError:
    retry_after = parse_retry_after(retry_after_header)
    retryable = status in RETRYABLE_STATUS
    if status == 429:
        return BackendUnavailable("model endpoint is rate limiting", retry_after, retryable=retryable, rate_limited=True)
    if status in (502, 503, 504):
        return BackendUnavailable(f"model endpoint answered HTTP {status}", retry_after, retryable=retryable)
    return BackendBadResponse(
        f"model endpoint answered HTTP {status}", retryable=retryable, blames_request=status in REQUEST_FAULTS,
    )


class _CompletionStream:
    """The chunks of one streamed completion: text pieces, the whole text so far, the usage."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self._events = sse_data(resp.content)
        self._parts: list[str] = []
        self._pending: list[str] = []
        self._usage: dict[str, Any] = {}
        self._done = False

    def take_whole(self, completion: Completion) -> None:
        if completion.text:
            self._pending.append(completion.text)
        self._usage = {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}
        self._done = True

    async def next_text(self) -> str | None:
        """The next non-empty piece of the answer, or None when the stream has ended."""
        if self._pending:
            piece = self._pending.pop(0)
            self._parts.append(piece)
            return piece
        while not self._done:
            try:
                data = await anext(self._events)
            except StopAsyncIteration:
                self._done = True
                break
            if data.strip() == "[DONE]":
                self._done = True
                break
            piece = self._read_chunk(data)
            if piece:
                self._parts.append(piece)
                return piece
        return None

    def _read_chunk(self, data: str) -> str:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BackendBadResponse("model endpoint sent an unreadable stream chunk") from exc
        if not isinstance(chunk, dict):
            raise BackendBadResponse("model endpoint sent an unreadable stream chunk")
        if chunk.get("error"):
            raise BackendUnavailable("model endpoint reported an error in the stream", retryable=True)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return ""
        delta = choices[0].get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else ""

    async def drain(self, timeout: float) -> None:
        """Read to the end after [DONE], so the connection goes back to the pool."""
        try:
            async with asyncio.timeout(timeout):
                await self.resp.read()
        except (TimeoutError, aiohttp.ClientError):
            self.resp.close()
            return
        self.resp.release()

    def abandon(self) -> None:
        """Drop the connection: its unread rest cannot be handed to the next request."""
        self.resp.close()

    def completion(self) -> Completion:
        try:
            prompt_tokens = int(self._usage.get("prompt_tokens") or 0)
            completion_tokens = int(self._usage.get("completion_tokens") or 0)
        except (TypeError, ValueError):
            prompt_tokens = completion_tokens = 0
        return Completion("".join(self._parts), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def _parse_completion(raw: bytes) -> Completion:
    try:
        data = orjson.loads(raw)
        text = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        return Completion(
            text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise BackendBadResponse("model endpoint sent an unreadable completion") from exc
