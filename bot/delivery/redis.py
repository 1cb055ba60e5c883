"""The scale-out queue: Redis Streams with one consumer group shared by every bot replica."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from bot.delivery.base import Job, message_from_dict, message_to_dict
from bot.errors import DependencyUnavailable
from bot.messages import InboundMessage
from servicekit.redis_pool import redis_client

T = TypeVar("T")

# SET NX PX and the XADD run as one script: a concurrent admit of the same id sees either
# nothing or both, and an XADD that fails takes the de-duplication mark back with it.
_ADMIT = """
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], 'message', ARGV[3], 'traceparent', ARGV[4], 'attempts', 0,
           'created_at', ARGV[5], 'state', 'pending')
local entry = redis.pcall('XADD', KEYS[3], '*', 'job', ARGV[2])
if type(entry) == 'table' and entry.err then
  redis.call('DEL', KEYS[1], KEYS[2])
  return entry
end
redis.call('HSET', KEYS[2], 'entry', entry)
return 1
"""

# Scheduled retries whose time has come go back to the end of the stream.
_PROMOTE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local job = ARGV[2] .. id
  if redis.call('HGET', job, 'state') == 'pending' then
    redis.call('HSET', job, 'entry', redis.call('XADD', KEYS[2], '*', 'job', id))
  end
end
return #ids
"""

# Releases the job's stream entry; every outcome (done, retry later, dead) starts with it.
_RELEASE = """
local entry = redis.call('HGET', KEYS[1], 'entry')
if entry then
  redis.call('XACK', KEYS[2], ARGV[1], entry)
  redis.call('XDEL', KEYS[2], entry)
  redis.call('HDEL', KEYS[1], 'entry')
end
"""

_COMPLETE = _RELEASE + """
redis.call('ZREM', KEYS[3], ARGV[2])
return redis.call('DEL', KEYS[1])
"""

_RETRY = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
""" + _RELEASE + """
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
"""

_DEFER = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
""" + _RELEASE + """
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
"""

_BURY = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
""" + _RELEASE + """
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[4], 'state', 'dead', 'buried_at', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
"""

# Only a job that still exists gets its reply: a late worker must not resurrect a finished job.
_SAVE_REPLY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

_REPLAY = """
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local job = ARGV[1] .. id
  if redis.call('ZREM', KEYS[1], id) == 1 and redis.call('EXISTS', job) == 1 then
    local entry = redis.call('XADD', KEYS[2], '*', 'job', id)
    redis.call('HSET', job, 'state', 'pending', 'attempts', 0, 'entry', entry)
    redis.call('HDEL', job, 'buried_at')
    n = n + 1
  end
end
return n
"""

_PURGE = """
local n = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('DEL', ARGV[1] .. ARGV[i])
    n = n + 1
  end
end
return n
"""

_BATCH = 500


class RedisQueue:
    """Jobs as hashes, their turn as stream entries, retries in a ZSET of due times, dead letters in another.

    Keys share one hash tag so the scripts stay valid on Redis Cluster. A claimed entry stays in
    the group's pending list until the job is released; an entry idle longer than the lease
    (its consumer died) is taken over with XAUTOCLAIM by any replica.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        dedup_ttl: float,
        *,
        prefix: str = "botwatch:{queue}:",
        group: str = "workers",
        consumer: str | None = None,
        clock: Callable[[], float] = time.time,
        owns_client: bool = False,
    ) -> None:
        self._redis = client
        self._owns_client = owns_client  # a client shared with the rest of the process is closed by its opener
        self.dedup_ttl = dedup_ttl
        self.prefix = prefix
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._clock = clock
        self.stream = prefix + "stream"
        self.scheduled = prefix + "scheduled"
        self.dead = prefix + "dead"
        self._admit = client.register_script(_ADMIT)
        self._promote = client.register_script(_PROMOTE)
        self._complete = client.register_script(_COMPLETE)
        self._retry = client.register_script(_RETRY)
        self._defer = client.register_script(_DEFER)
        self._bury = client.register_script(_BURY)
        self._save_reply = client.register_script(_SAVE_REPLY)
        self._replay = client.register_script(_REPLAY)
        self._purge = client.register_script(_PURGE)

    @classmethod
    def from_url(cls, url: str, dedup_ttl: float, *, max_connections: int = 64, **kwargs: Any) -> RedisQueue:
        """A queue with its own connection pool (see servicekit.redis_pool)."""
        client = redis_client(url, max_connections=max_connections, decode_responses=True)
        return cls(client, dedup_ttl, owns_client=True, **kwargs)

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except (RedisError, OSError) as exc:
            # The type is enough to act on; the text may carry the server address.
            raise DependencyUnavailable(f"queue store (redis) unavailable: {type(exc).__name__}") from exc

    async def open(self) -> None:
        """Create the consumer group if Redis answers; otherwise it is created on first use."""
        try:
            await self._ensure_group()
        except (RedisError, OSError):
            pass

    async def _ensure_group(self) -> None:
        try:
            # From "0": entries added before the group existed (or after Redis lost it) still get read.
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def admit(self, message: InboundMessage, traceparent: str | None) -> bool:
        seen = f"{self.prefix}seen:{message.platform}:{message.message_id}"
        job_id = uuid.uuid4().hex
        admitted = await self._call(lambda: self._admit(
            keys=[seen, self._job_key(job_id), self.stream],
            args=[int(self.dedup_ttl * 1000), job_id, orjson.dumps(message_to_dict(message)).decode(),
                  traceparent or "", repr(self._clock())],
        ))
        return bool(admitted)

    async def claim(self, lease_seconds: float) -> Job | None:
        return await self._call(lambda: self._claim(lease_seconds))

    async def _claim(self, lease_seconds: float) -> Job | None:
        await self._promote(keys=[self.scheduled, self.stream], args=[repr(self._clock()), self.prefix + "job:"])
        # Bounded: each pass either returns a job or drops one stale entry.
        for _ in range(16):
            entry = await self._next_entry(lease_seconds)
            if entry is None:
                return None
            entry_id, job_id = entry
            fields = await self._redis.hgetall(self._job_key(job_id)) if job_id else {}
            if fields.get("state") == "pending" and fields.get("entry") == entry_id:
                return _job(job_id, fields)
            # The job finished, was retried or purged while this entry waited: drop the entry.
            await self._redis.xack(self.stream, self.group, entry_id)
            await self._redis.xdel(self.stream, entry_id)
        return None

    async def _next_entry(self, lease_seconds: float) -> tuple[str, str] | None:
        try:
            return await self._read_entry(lease_seconds)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        # Redis restarted empty, or the stream was deleted: recreate the group and carry on.
        await self._ensure_group()
        return await self._read_entry(lease_seconds)

    async def _read_entry(self, lease_seconds: float) -> tuple[str, str] | None:
        # Entries whose consumer held them past the lease come first: they are the oldest.
        reclaimed = await self._redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=int(lease_seconds * 1000),
            start_id="0-0", count=1,
        )
        entries = reclaimed[1] if len(reclaimed) > 1 else []
        if not entries:
            read = await self._redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=1)
            entries = read[0][1] if read else []
        if not entries:
            return None
        entry_id, fields = entries[0]
        return entry_id, (fields or {}).get("job", "")

    async def save_reply(self, job_id: str, text: str) -> None:
        await self._call(lambda: self._save_reply(keys=[self._job_key(job_id)], args=[text, "reply_text"]))

    async def save_stream_handle(self, job_id: str, handle: str) -> None:
        await self._call(lambda: self._save_reply(keys=[self._job_key(job_id)], args=[handle, "stream_handle"]))

    async def complete(self, job_id: str) -> None:
        await self._call(lambda: self._complete(
            keys=[self._job_key(job_id), self.stream, self.scheduled], args=[self.group, job_id],
        ))

    async def retry(self, job_id: str, delay: float, error: str) -> None:
        due = self._clock() + delay
        await self._call(lambda: self._retry(
            keys=[self._job_key(job_id), self.stream, self.scheduled], args=[self.group, job_id, repr(due), error],
        ))

    async def defer(self, job_id: str, delay: float) -> None:
        due = self._clock() + delay
        await self._call(lambda: self._defer(
            keys=[self._job_key(job_id), self.stream, self.scheduled], args=[self.group, job_id, repr(due)],
        ))

    async def bury(self, job_id: str, error: str) -> None:
        await self._call(lambda: self._bury(
            keys=[self._job_key(job_id), self.stream, self.dead, self.scheduled],
            args=[self.group, job_id, repr(self._clock()), error],
        ))

    async def dead_letters(self, limit: int = 100) -> Sequence[Job]:
        return await self._call(lambda: self._dead_letters(limit))

    async def _dead_letters(self, limit: int) -> list[Job]:
        if limit <= 0:
            return []
        ids = await self._redis.zrange(self.dead, 0, limit - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self._job_key(job_id))
            rows = await pipe.execute()
        return [_job(job_id, fields) for job_id, fields in zip(ids, rows) if fields]

    async def dead_letter(self, job_id: str) -> Job | None:
        return await self._call(lambda: self._dead_letter(job_id))

    async def _dead_letter(self, job_id: str) -> Job | None:
        if await self._redis.zscore(self.dead, job_id) is None:
            return None
        fields = await self._redis.hgetall(self._job_key(job_id))
        return _job(job_id, fields) if fields else None

    async def replay(self, job_id: str | None = None) -> int:
        return await self._call(lambda: self._each_dead(self._replay, job_id))

    async def purge(self, job_id: str | None = None) -> int:
        return await self._call(lambda: self._each_dead(self._purge, job_id))

    async def _each_dead(self, script: Any, job_id: str | None) -> int:
        keys = [self.dead, self.stream]
        if job_id is not None:
            return int(await script(keys=keys, args=[self.prefix + "job:", job_id]))
        total = 0
        while ids := await self._redis.zrange(self.dead, 0, _BATCH - 1):
            total += int(await script(keys=keys, args=[self.prefix + "job:", *ids]))
        return total

    async def depth(self) -> dict[str, int]:
        return await self._call(self._depth)

    async def _depth(self) -> dict[str, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.zcard(self.scheduled)
            pipe.zcard(self.dead)
            waiting, scheduled, dead = await pipe.execute()
        return {"inbound": int(waiting) + int(scheduled), "dead_letter": int(dead)}

    async def oldest_waiting_since(self) -> float | None:
        return await self._call(self._oldest_waiting_since)

    async def _oldest_waiting_since(self) -> float | None:
        # The first entry past the group's last delivered id is the oldest not yet claimed; its id
        # is the time (ms) Redis added it. Retries whose time has come wait in the ZSET until promoted.
        times: list[float] = []
        try:
            groups = await self._redis.xinfo_groups(self.stream)
        except ResponseError:
            groups = []  # no stream yet
        last = next((g.get("last-delivered-id") for g in groups if g.get("name") == self.group), None)
        if last is not None:
            entries = await self._redis.xrange(self.stream, min=f"({last}", count=1)
            if entries:
                times.append(int(entries[0][0].split("-", 1)[0]) / 1000)
        due = await self._redis.zrangebyscore(self.scheduled, "-inf", repr(self._clock()), start=0, num=1,
                                              withscores=True)
        if due:
            times.append(float(due[0][1]))
        return min(times) if times else None

    async def persistence(self) -> tuple[str, str]:
        """How the server keeps data across a restart (`aof`, `rdb`, `aof+rdb`, `none`) and its eviction policy.

        `unknown` when CONFIG is refused (some managed services) or the server does not answer.
        """
        try:
            config = {
                **await self._redis.config_get("appendonly"), **await self._redis.config_get("save"),
                **await self._redis.config_get("maxmemory-policy"),
            }
        except (RedisError, OSError):
            return "unknown", "unknown"
        aof = config.get("appendonly") == "yes"
        rdb = bool((config.get("save") or "").strip())
        mode = "aof+rdb" if aof and rdb else "aof" if aof else "rdb" if rdb else "none"
        return mode, str(config.get("maxmemory-policy", "unknown"))

    async def check(self) -> None:
        await self._call(self._redis.ping)

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()


def _job(job_id: str, fields: dict[str, str]) -> Job:
    return Job(
        id=job_id,
        message=message_from_dict(orjson.loads(fields["message"])),
        attempts=int(fields.get("attempts", 0)),
        reply_text=fields.get("reply_text"),
        traceparent=fields.get("traceparent") or None,
        last_error=fields.get("last_error"),
        created_at=float(fields.get("created_at", 0.0)),
        stream_handle=fields.get("stream_handle") or None,
    )
