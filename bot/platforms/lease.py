"""A Redis lease: at most one replica holds a platform connection, and a dead holder's lapses in seconds."""

from __future__ import annotations

import asyncio
import logging
import secrets

import redis.asyncio as aioredis

from bot.platforms.longconn import LEASE_LOST, Ended

log = logging.getLogger("bot.platforms.lease")

# Only the holder (same token) may extend or drop the lease; anyone else's call is a no-op.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Lease:
    """`SET key token NX PX ttl`, renewed at a third of the ttl while held.

    A holder killed with -9 stops renewing, so the key expires within `ttl` and a standby that
    polls every `poll_seconds` takes over: the gap is at most ttl + poll.
    """

    def __init__(self, client: aioredis.Redis, key: str, ttl_seconds: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(int(ttl_seconds * 1000), 100)
        self.poll_seconds = ttl_seconds / 3
        self.token = secrets.token_hex(16)
        self.held = False

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (or we already do); raises when Redis is unreachable."""
        if await self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            self.held = True
        else:
            self.held = bool(await self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
        return self.held

    async def lost(self) -> Ended:
        """Renew while held; return once the lease is gone, so the connection can be dropped.

        Renewal failures are tolerated until the lease would have expired anyway: after that
        another replica may hold it, and two connections must not outlive the ttl.
        """
        last_renewed = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                renewed = bool(await self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
            except Exception as exc:
                if asyncio.get_running_loop().time() - last_renewed < self.ttl_ms / 1000 - self.poll_seconds:
                    continue
                self.held = False
                return Ended(LEASE_LOST, f"could not renew the lease: {type(exc).__name__}")
            if not renewed:
                self.held = False
                return Ended(LEASE_LOST, "the lease expired and another replica took it")
            last_renewed = asyncio.get_running_loop().time()

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            await self.client.eval(_RELEASE, 1, self.key, self.token)
        except Exception as exc:  # it expires on its own within the ttl
            log.warning("could not release the connection lease: %s", type(exc).__name__)
