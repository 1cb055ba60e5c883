"""Reading a server-sent event stream (the wire format of streamed chat completions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp


async def sse_data(content: aiohttp.StreamReader) -> AsyncIterator[str]:
    """Yield the data of each event: `data:` lines joined, dispatched at a blank line or the end.

    Comments (`:` keep-alives) and the other fields (`event`, `id`, `retry`) carry nothing a
    completion needs and are skipped, as the SSE specification lets a client do.
    """
    data: list[str] = []
    while True:
        line = await content.readline()
        if not line:
            break
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if text.startswith("data:"):
            value = text[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
