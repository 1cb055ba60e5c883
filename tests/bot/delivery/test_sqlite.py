"""What only the SQLite queue has to take care of: its de-duplication table must not grow forever."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from bot.delivery.sqlite import SQLiteQueue
from bot.messages import InboundMessage


def message(message_id: str) -> InboundMessage:
    return InboundMessage(platform="example", message_id=message_id, chat_id="c", user_id="u", text="t",
                          received_at=0.0)


async def test_expired_duplicate_marks_are_swept_as_messages_keep_arriving(tmp_path: Path) -> None:
    now = [1000.0]
    queue = SQLiteQueue(tmp_path / "q.sqlite3", dedup_ttl=60, clock=lambda: now[0])
    await queue.open()
    for i in range(10):
        await queue.admit(message(f"old-{i}"), None)
    now[0] += 61
    for i in range(1000):
        await queue.admit(message(f"new-{i}"), None)
    await queue.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "q.sqlite3")) as db:
        ids = {row[0] for row in db.execute("SELECT message_id FROM seen")}
    assert not {f"old-{i}" for i in range(10)} & ids
    assert len(ids) == 1000
