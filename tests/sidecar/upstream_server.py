"""A local upstream for sidecar tests: echoes requests, and misbehaves on demand (slow, silent, reset, garbage).

Run as `python -m tests.sidecar.upstream_server PORT NAME`; NAME is echoed so tests can tell upstreams apart.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web


def _raw(request: web.Request, data: bytes, *, reset: bool = False) -> web.Response:
    """Write bytes straight to the socket (what no well-behaved server would send), then drop the connection."""
    transport = request.transport
    assert transport is not None
    if data:
        transport.write(data)
    if reset:
        sock = transport.get_extra_info("socket")
        # SO_LINGER 0: close() sends a TCP reset instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()
    return web.Response()


def _raw_handler(data: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return _raw(request, data)

    return handler


# Responses written byte for byte, then the connection is closed (and those that are complete HTTP say
# so, or a proxy would pool the connection and race the close with its next request).
RAW_RESPONSES = {
    "/garbage": b"this is not HTTP at all\r\n\r\n",
    "/hop": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close, X-Hop-Only\r\nX-Hop-Only: 1\r\n"
        b"Keep-Alive: timeout=5\r\nX-End-To-End: kept\r\n\r\nok"
    ),
    # HTTP/1.0 style: no length, no chunking; the end of the connection ends the body.
    "/until-close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nbody until close",
    "/overlong": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-ID: r\r\n\r\nokEXTRA BYTES",
    "/early-hints": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-ID: r\r\nConnection: close\r\n\r\nfinal"
    ),
}


def create_app(name: str) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "upstream": name,
                "method": request.method,
                "path": request.raw_path,
                "headers": [[k.decode(), v.decode()] for k, v in request.raw_headers],
                "body": body.decode("utf-8", "replace"),
                "body_length": len(body),
            }
        )

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "1")))
        return web.json_response({"upstream": name, "slept": float(request.query.get("seconds", "1"))})

    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response()

    async def reset(request: web.Request) -> web.Response:
        return _raw(request, b"", reset=True)

    async def truncated(request: web.Request) -> web.Response:
        return _raw(request, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it", reset=True)

    async def like_the_bot(request: web.Request) -> web.Response:
        # Echoes X-Request-ID like the bot does, so the sidecar can relay the response as it is.
        return web.Response(text="relayed", headers={"X-Request-ID": request.headers.get("X-Request-ID", "")})

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(int(request.query.get("parts", "5"))):
            await response.write(f"part {i}\n".encode())
        await response.write_eof()
        return response

    async def big(request: web.Request) -> web.Response:
        size = int(request.query.get("bytes", str(4 * 1024 * 1024)))
        return web.Response(body=bytes(range(256)) * (size // 256), content_type="application/octet-stream")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/health", health)
    app.router.add_get("/slow", slow)
    app.router.add_get("/silent", silent)
    app.router.add_get("/reset", reset)
    app.router.add_get("/truncated", truncated)
    app.router.add_get("/like-the-bot", like_the_bot)
    for path, data in RAW_RESPONSES.items():
        app.router.add_get(path, _raw_handler(data))
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/big", big)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    web.run_app(
        create_app(name), host="127.0.0.1", port=port, print=None, access_log=None,
        handler_cancellation=True, shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()
