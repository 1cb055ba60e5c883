"""The access log: one ECS line per request, handed to the writer thread in batches, keeping its own time."""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import queue
import time

import pytest

from servicekit.logs import AccessLog


def lines_of(handed: queue.SimpleQueue[str | None]) -> list[list[dict[str, object]]]:
    """Each hand-over to the writer thread, as the lines it carried."""
    batches = []
    while not handed.empty():
        chunk = handed.get_nowait()
        assert chunk is not None
        batches.append([json.loads(line) for line in chunk.split("\n")])
    return batches


async def test_lines_go_to_the_writer_in_batches_keeping_their_own_time() -> None:
    handed: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    access = AccessLog("svc", "1.2.3", "svc.access", interval=0.05, max_batch=3, lines=handed)
    made = time.time()
    access.write("GET / 200", {"url": {"path": "/"}})
    access.write("GET / 200", {"url": {"path": "/"}})
    assert lines_of(handed) == [], "held until the batch fills or the interval passes"
    access.write("GET / 200", {"url": {"path": "/"}}, ("a" * 32, "b" * 16))
    [full] = lines_of(handed)
    assert len(full) == 3, "a full batch goes at once"
    access.write("POST /x 429", {"url": {"path": "/x"}})
    await asyncio.sleep(0.1)
    [partial] = lines_of(handed)
    assert [line["message"] for line in partial] == ["POST /x 429"], "the interval hands over a partial batch"
    first, third, last = full[0], full[2], partial[0]
    stamp = calendar.timegm(time.strptime(str(first["@timestamp"])[:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(stamp - made) < 2
    assert third["trace"] == {"id": "a" * 32} and third["span"] == {"id": "b" * 16}
    assert last["url"] == {"path": "/x"} and last["log.level"] == "info"
    assert last["service"] == {"name": "svc", "version": "1.2.3"} and last["log"] == {"logger": "svc.access"}


async def test_flush_hands_over_what_is_pending_at_shutdown() -> None:
    handed: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    access = AccessLog("svc", "1", "svc.access", interval=60, lines=handed)
    access.write("GET / 200", {})
    access.flush()
    assert [len(batch) for batch in lines_of(handed)] == [1]
    access.flush()
    assert lines_of(handed) == [], "nothing twice"


def test_without_configured_logging_lines_go_through_the_named_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "svc.unconfigured")
    AccessLog("svc", "1", "svc.unconfigured").write("GET / 200", {"url": {"path": "/"}})
    [record] = [r for r in caplog.records if r.name == "svc.unconfigured"]
    assert record.getMessage() == "GET / 200" and record.__dict__["ecs"] == {"url": {"path": "/"}}
