"""Calling platform APIs: one place that turns HTTP outcomes into DeliveryFailed, retryable or not."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

import aiohttp
import orjson

from bot.platforms.base import DeliveryFailed
from servicekit.retry_after import parse_retry_after

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=10.0, sock_connect=3.0)


async def request_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    passthrough: Collection[int] = (),
) -> tuple[int, dict[str, Any]]:
    """Send a JSON request; return (status, JSON object) for 2xx-4xx, raise DeliveryFailed otherwise.

    Network errors, timeouts, 429 and 5xx are retryable (429 and 503 honour Retry-After);
    the caller decides what a 4xx or a platform error code in the body means. Statuses in
    `passthrough` are returned instead, for platforms that explain them in the body (Telegram's
    429 carries `parameters.retry_after` there, not in a header).
    """
    body = orjson.dumps(json) if json is not None else None
    send_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    try:
        async with http.request(method, url, data=body, headers=send_headers, params=params, timeout=timeout) as resp:
            raw = await resp.read()
            status = resp.status
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    except asyncio.TimeoutError:
        raise DeliveryFailed("platform API timed out", retryable=True) from None
    except aiohttp.ClientError as exc:
        raise DeliveryFailed(f"platform API unreachable: {type(exc).__name__}", retryable=True) from None
    if (status == 429 or status >= 500) and status not in passthrough:
        raise DeliveryFailed(f"platform API answered HTTP {status}", retryable=True, retry_after=retry_after)
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise DeliveryFailed(f"platform API sent non-JSON (HTTP {status})", retryable=status >= 500) from None
    if not isinstance(data, dict):
        data = {"data": data}
    return status, data
