"""The InboundQueue contract, held by the embedded SQLite queue and the Redis Streams queue alike."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from bot.delivery.base import InboundQueue, Job
from bot.delivery.redis import RedisQueue
from bot.delivery.sqlite import SQLiteQueue
from bot.errors import DependencyUnavailable
from bot.messages import InboundMessage
from tests.support.ports import free_port

LONG_LEASE = 60.0


@dataclass
class Store:
    """One backing store and the ways a test can open, hand over, break and lose it."""

    name: str
    open: Callable[..., Awaitable[InboundQueue]]  # a handle, as a bot process would open it
    take_over: Callable[[InboundQueue], Awaitable[InboundQueue]]  # the handle a surviving worker uses
    break_enqueue: Callable[[], None]
    repair_enqueue: Callable[[], None]
    unreachable: Callable[[], Awaitable[InboundQueue]]


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    handles: list[InboundQueue] = []

    async def track(queue: InboundQueue) -> InboundQueue:
        handles.append(queue)
        return queue

    if request.param == "sqlite":
        path = tmp_path / "queue.sqlite3"

        async def open_sqlite(ttl: float = 3600) -> InboundQueue:
            queue = SQLiteQueue(path, ttl)
            await queue.open()
            return await track(queue)

        async def reopen(old: InboundQueue) -> InboundQueue:
            # One process owns the file: the survivor is the restarted process.
            await old.close()
            return await open_sqlite()

        def sql(statement: str) -> None:
            with contextlib.closing(sqlite3.connect(path)) as db:
                db.execute(statement)

        async def corrupt() -> InboundQueue:
            bad = tmp_path / "corrupt.sqlite3"
            bad.write_bytes(b"this is not a database file" * 100)
            queue = SQLiteQueue(bad, 60)
            with contextlib.suppress(DependencyUnavailable):
                await queue.open()
            return await track(queue)

        yield Store(
            "sqlite", open_sqlite, reopen,
            lambda: sql("CREATE TRIGGER refuse BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'disk full'); END"),
            lambda: sql("DROP TRIGGER refuse"),
            corrupt,
        )
    else:
        url = request.getfixturevalue("redis_url")
        admin = redis.Redis.from_url(url)

        async def open_redis(ttl: float = 3600) -> InboundQueue:
            queue = RedisQueue.from_url(url, ttl)
            await queue.open()
            return await track(queue)

        async def another_consumer(old: InboundQueue) -> InboundQueue:
            # The old consumer stays registered, as a crashed replica's would.
            return await open_redis()

        def wrong_type_stream() -> None:
            admin.delete("botwatch:{queue}:stream")
            admin.set("botwatch:{queue}:stream", "not a stream")

        async def nothing_listening() -> InboundQueue:
            queue = RedisQueue.from_url(f"redis://127.0.0.1:{free_port()}/0", 60)
            await queue.open()
            return await track(queue)

        yield Store(
            "redis", open_redis, another_consumer, wrong_type_stream,
            lambda: admin.delete("botwatch:{queue}:stream"), nothing_listening,
        )
        admin.close()
    for queue in handles:
        with contextlib.suppress(DependencyUnavailable):
            await queue.close()


def message(message_id: str = "m-1", platform: str = "example", text: str = "hello") -> InboundMessage:
    return InboundMessage(
        platform=platform, message_id=message_id, chat_id="c-1", user_id="u-1", text=text,
        received_at=1_700_000_000.5, reply_handle={"thread": "t-9"},
    )


async def claim_within(queue: InboundQueue, lease: float, timeout: float = 5.0) -> tuple[Job, float]:
    """Poll until a job is due; returns it and when it came (monotonic seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await queue.claim(lease)
        if job is not None:
            return job, time.monotonic()
        await asyncio.sleep(0.02)
    raise AssertionError(f"no job became due within {timeout}s")


async def test_a_message_is_admitted_once_and_its_redelivery_refused(store: Store) -> None:
    queue = await store.open()
    assert await queue.admit(message("m-1"), "00-trace-01") is True
    assert await queue.admit(message("m-1"), None) is False
    # The id is per platform: another platform's m-1 is a different message.
    assert await queue.admit(message("m-1", platform="other"), None) is True
    assert (await queue.depth())["inbound"] == 2


async def test_the_duplicate_mark_expires_after_the_ttl(store: Store) -> None:
    queue = await store.open(ttl=0.4)
    started = time.monotonic()
    assert await queue.admit(message("m-ttl"), None) is True
    assert await queue.admit(message("m-ttl"), None) is False
    while not await queue.admit(message("m-ttl"), None):
        assert time.monotonic() - started < 5, "the duplicate mark never expired"
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.4


async def test_concurrent_admits_of_one_id_from_two_handles_admit_exactly_one(store: Store) -> None:
    first, second = await store.open(), await store.open()
    results = await asyncio.gather(*(q.admit(message("m-race"), None) for q in [first, second] * 10))
    assert results.count(True) == 1
    assert (await first.depth())["inbound"] == 1


async def test_a_burst_of_concurrent_admits_is_taken_whole(store: Store) -> None:
    # More at once than a connection pool holds: callers wait their turn rather than fail.
    queue = await store.open()
    results = await asyncio.gather(*(queue.admit(message(f"m-{i}"), None) for i in range(300)))
    assert results == [True] * 300
    assert (await queue.depth())["inbound"] == 300


async def test_a_failed_enqueue_leaves_the_id_unseen_so_the_platform_retry_is_admitted(store: Store) -> None:
    queue = await store.open()
    store.break_enqueue()
    with pytest.raises(DependencyUnavailable):
        await queue.admit(message("m-fail"), None)
    store.repair_enqueue()
    assert await queue.admit(message("m-fail"), None) is True
    job, _ = await claim_within(queue, LONG_LEASE)
    assert job.message.message_id == "m-fail"


async def test_jobs_are_claimed_oldest_first_with_the_message_intact(store: Store) -> None:
    queue = await store.open()
    for i in range(3):
        await queue.admit(message(f"m-{i}", text=f"text {i} ✓ 日本"), f"00-{i:032x}-{i:016x}-01")
    jobs = [await queue.claim(LONG_LEASE) for _ in range(3)]
    assert [job.message.message_id for job in jobs if job] == ["m-0", "m-1", "m-2"]
    first = jobs[0]
    assert first is not None
    assert first.message == message("m-0", text="text 0 ✓ 日本")
    assert (first.attempts, first.reply_text, first.last_error) == (0, None, None)
    assert first.traceparent == f"00-{0:032x}-{0:016x}-01"
    assert first.created_at > 0
    assert await queue.claim(LONG_LEASE) is None


async def test_a_claimed_job_is_not_handed_out_again_while_its_lease_holds(store: Store) -> None:
    queue = await store.open()
    await queue.admit(message(), None)
    assert await queue.claim(LONG_LEASE) is not None
    assert await queue.claim(LONG_LEASE) is None
    survivor = await store.take_over(queue) if store.name == "redis" else queue
    assert await survivor.claim(LONG_LEASE) is None


async def test_a_job_whose_lease_ran_out_is_taken_over_with_its_saved_reply(store: Store) -> None:
    queue = await store.open()
    await queue.admit(message("m-lease"), None)
    job = await queue.claim(0.3)
    assert job is not None
    await queue.save_reply(job.id, "the model's answer")
    survivor = await store.take_over(queue)
    again, _ = await claim_within(survivor, 0.3)
    assert again.id == job.id
    assert again.reply_text == "the model's answer"
    await survivor.complete(again.id)
    assert (await survivor.depth())["inbound"] == 0


async def test_a_streamed_replys_message_handle_survives_a_take_over(store: Store) -> None:
    queue = await store.open()
    await queue.admit(message("m-stream"), None)
    job = await queue.claim(0.3)
    assert job is not None and job.stream_handle is None
    await queue.save_stream_handle(job.id, "4711")
    survivor = await store.take_over(queue)
    again, _ = await claim_within(survivor, 0.3)
    assert (again.id, again.stream_handle, again.reply_text) == (job.id, "4711", None)


async def test_a_retried_job_comes_back_after_its_delay_counting_the_attempt(store: Store) -> None:
    queue = await store.open()
    await queue.admit(message("m-retry"), None)
    job = await queue.claim(LONG_LEASE)
    assert job is not None
    await queue.save_reply(job.id, "saved")
    started = time.monotonic()
    await queue.retry(job.id, 0.5, "platform API answered HTTP 503")
    assert await queue.claim(LONG_LEASE) is None
    assert (await queue.depth())["inbound"] == 1
    again, came = await claim_within(queue, LONG_LEASE)
    assert came - started >= 0.5
    assert (again.id, again.attempts, again.last_error, again.reply_text) == (
        job.id, 1, "platform API answered HTTP 503", "saved",
    )


async def test_a_deferred_job_comes_back_after_its_delay_without_counting_an_attempt(store: Store) -> None:
    queue = await store.open()
    await queue.admit(message("m-shaped"), None)
    job = await queue.claim(LONG_LEASE)
    assert job is not None
    await queue.save_reply(job.id, "saved")
    started = time.monotonic()
    await queue.defer(job.id, 0.5)
    assert await queue.claim(LONG_LEASE) is None
    assert (await queue.depth())["inbound"] == 1
    again, came = await claim_within(queue, LONG_LEASE)
    assert came - started >= 0.5
    assert (again.id, again.attempts, again.last_error, again.reply_text) == (job.id, 0, None, "saved")


async def test_a_finished_job_is_not_brought_back_by_a_late_deferral(store: Store) -> None:
    queue = await store.open()
    await queue.admit(message("m-done-then-deferred"), None)
    job = await queue.claim(LONG_LEASE)
    assert job is not None
    await queue.bury(job.id, "gave up")
    await queue.defer(job.id, 0.0)
    assert await queue.claim(0.0) is None
    assert await queue.depth() == {"inbound": 0, "dead_letter": 1}


async def test_a_completed_job_is_gone_but_its_id_stays_seen(store: Store) -> None:
    queue = await store.open()
    await queue.admit(message("m-done"), None)
    job = await queue.claim(LONG_LEASE)
    assert job is not None
    await queue.complete(job.id)
    await queue.complete(job.id)  # a second worker finishing late changes nothing
    await queue.save_reply(job.id, "late")  # nor does a late reply bring it back
    assert await queue.claim(0.0) is None
    assert await queue.depth() == {"inbound": 0, "dead_letter": 0}
    assert await queue.admit(message("m-done"), None) is False


async def test_a_buried_job_is_a_dead_letter_with_its_reason(store: Store) -> None:
    queue = await store.open()
    await queue.admit(message("m-dead"), "00-trace")
    job = await queue.claim(LONG_LEASE)
    assert job is not None
    await queue.bury(job.id, "platform API answered HTTP 429")
    assert await queue.claim(0.0) is None
    assert await queue.depth() == {"inbound": 0, "dead_letter": 1}
    [dead] = await queue.dead_letters()
    assert (dead.id, dead.message, dead.attempts, dead.last_error) == (
        job.id, message("m-dead"), 1, "platform API answered HTTP 429",
    )
    assert await queue.dead_letter(job.id) == dead
    assert await queue.dead_letter("no-such-job") is None


async def test_replay_makes_a_dead_letter_due_again_with_its_saved_reply(store: Store) -> None:
    queue = await store.open()
    await queue.admit(message("m-replay"), None)
    job = await queue.claim(LONG_LEASE)
    assert job is not None
    await queue.save_reply(job.id, "already answered")
    await queue.bury(job.id, "gave up")
    assert await queue.replay(job.id) == 1
    assert await queue.replay(job.id) == 0
    assert await queue.dead_letters() == []
    again, _ = await claim_within(queue, LONG_LEASE)
    assert (again.id, again.attempts, again.reply_text) == (job.id, 0, "already answered")


async def test_replay_all_and_purge_one_or_all(store: Store) -> None:
    queue = await store.open()
    ids = []
    for i in range(3):
        await queue.admit(message(f"m-{i}"), None)
        job = await queue.claim(LONG_LEASE)
        assert job is not None
        await queue.bury(job.id, f"reason {i}")
        ids.append(job.id)
    assert [job.id for job in await queue.dead_letters(limit=2)] == ids[:2]
    assert await queue.replay() == 3
    assert await queue.depth() == {"inbound": 3, "dead_letter": 0}
    for _ in range(3):
        job = await queue.claim(LONG_LEASE)
        assert job is not None
        await queue.bury(job.id, "again")
    assert await queue.purge(ids[1]) == 1
    assert await queue.purge(ids[1]) == 0
    assert await queue.dead_letter(ids[1]) is None
    assert await queue.purge() == 2
    assert await queue.depth() == {"inbound": 0, "dead_letter": 0}
    assert await queue.claim(0.0) is None


async def test_depth_counts_waiting_scheduled_and_dead_jobs(store: Store) -> None:
    queue = await store.open()
    for i in range(4):
        await queue.admit(message(f"m-{i}"), None)
    first, second = await queue.claim(LONG_LEASE), await queue.claim(LONG_LEASE)
    assert first is not None and second is not None
    await queue.retry(first.id, 60, "later")
    await queue.bury(second.id, "never")
    assert await queue.depth() == {"inbound": 3, "dead_letter": 1}


async def test_the_oldest_waiting_job_is_dated_from_when_it_became_due_and_claimed_ones_do_not_count(
    store: Store,
) -> None:
    queue = await store.open()
    assert await queue.oldest_waiting_since() is None
    before = time.time()
    await queue.admit(message("m-old"), None)
    await asyncio.sleep(0.3)
    await queue.admit(message("m-new"), None)
    since = await queue.oldest_waiting_since()
    assert since is not None and before - 0.05 <= since <= before + 0.2
    first = await queue.claim(LONG_LEASE)
    assert first is not None and first.message.message_id == "m-old"
    since = await queue.oldest_waiting_since()
    assert since is not None and since >= before + 0.25, "a claimed job still counted as waiting"
    second = await queue.claim(LONG_LEASE)
    assert second is not None
    assert await queue.oldest_waiting_since() is None
    # A retry waits only once it is due again.
    retried = time.time()
    await queue.retry(second.id, 0.3, "platform down")
    assert await queue.oldest_waiting_since() is None
    await asyncio.sleep(0.4)
    since = await queue.oldest_waiting_since()
    # Waiting since it fell due (0.3 s after the retry), not since it was first admitted.
    assert since is not None and retried + 0.25 <= since <= retried + 1.0, since - retried


async def test_check_answers_while_the_store_is_up_and_raises_when_it_is_down(store: Store) -> None:
    await (await store.open()).check()
    down = await store.unreachable()
    with pytest.raises(DependencyUnavailable):
        await down.check()
    with pytest.raises(DependencyUnavailable):
        await down.admit(message("m-down"), None)
    with pytest.raises(DependencyUnavailable):
        await down.claim(LONG_LEASE)
