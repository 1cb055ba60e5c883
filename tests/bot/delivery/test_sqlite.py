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


async def test_a_queue_file_from_before_streamed_replies_gains_the_column_and_keeps_its_jobs(tmp_path: Path) -> None:
    import time

    path = tmp_path / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript("""
            CREATE TABLE jobs (
                id TEXT PRIMARY KEY, seq INTEGER NOT NULL, state TEXT NOT NULL,
                message TEXT NOT NULL, traceparent TEXT, reply_text TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, due_at REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0,
                last_error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
            );
        """)
        message = ('{"platform":"example","message_id":"m-old","chat_id":"c","user_id":"u","text":"hi",'
                   '"received_at":1.0,"reply_handle":{}}')
        db.execute("INSERT INTO jobs VALUES ('j-old', 1, 'pending', ?, NULL, 'saved', 0, 0, 0, NULL, ?, ?)",
                   (message, time.time(), time.time()))
        db.commit()
    queue = SQLiteQueue(path, 3600)
    await queue.open()
    try:
        job = await queue.claim(60)
        assert job is not None and (job.id, job.reply_text, job.stream_handle) == ("j-old", "saved", None)
        await queue.save_stream_handle(job.id, "12")
    finally:
        await queue.close()
