"""The embedded queue: one SQLite file (WAL), durable across restarts of a single bot process."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bot.delivery.base import Job, message_from_dict, message_to_dict
from bot.errors import DependencyUnavailable
from bot.messages import InboundMessage

T = TypeVar("T")
_SWEEP_EVERY = 1000  # admissions between sweeps of expired de-duplication marks

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    platform TEXT NOT NULL, message_id TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (platform, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, state TEXT NOT NULL,
    message TEXT NOT NULL, traceparent TEXT, reply_text TEXT, stream_handle TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, due_at REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0,
    last_error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, due_at, seq);
CREATE INDEX IF NOT EXISTS seen_expiry ON seen (expires_at);
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL NOT NULL);
"""


class SQLiteQueue:
    """Jobs and the de-duplication set in one file; every call runs on one private thread.

    One thread keeps SQLite's single-writer rule trivially true and the event loop free of
    disk waits. WAL with synchronous=NORMAL survives a killed process (the failure we test);
    a power cut may lose the last commits, which the platforms' re-delivery then covers.
    """

    def __init__(
        self, path: str | Path, dedup_ttl: float, clock: Callable[[], float] = time.time, *, min_free_bytes: int = 0,
    ) -> None:
        self.path = str(path)
        self.min_free_bytes = min_free_bytes
        self.dedup_ttl = dedup_ttl
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-queue")
        self._db: sqlite3.Connection | None = None
        self._seq = 0
        self._closed = False

    async def open(self, *, recover: bool = True) -> None:
        """Open the file; `recover` (the bot itself, not a tool beside it) voids leases a crashed process held."""
        await self._run(self._open, recover)

    def _open(self, recover: bool) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        if "stream_handle" not in columns:
            # A queue file from before streamed replies: the column is added in place, nothing is lost.
            db.execute("ALTER TABLE jobs ADD COLUMN stream_handle TEXT")
        if recover:
            # One process owns the file: leases held by a previous (crashed) process are void.
            db.execute("UPDATE jobs SET lease_until = 0 WHERE state = 'pending'")
        self._seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0]
        self._db = db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise DependencyUnavailable("queue store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise DependencyUnavailable(f"queue store failed: {type(exc).__name__}") from exc

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise DependencyUnavailable("queue store is not open")
        return self._db

    async def admit(self, message: InboundMessage, traceparent: str | None) -> bool:
        return await self._run(self._admit, message, traceparent)

    def _admit(self, message: InboundMessage, traceparent: str | None) -> bool:
        db = self.db
        now = self._clock()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "DELETE FROM seen WHERE platform = ? AND message_id = ? AND expires_at <= ?",
                (message.platform, message.message_id, now),
            )
            cur = db.execute(
                "INSERT OR IGNORE INTO seen (platform, message_id, expires_at) VALUES (?, ?, ?)",
                (message.platform, message.message_id, now + self.dedup_ttl),
            )
            if cur.rowcount == 0:
                db.execute("COMMIT")
                return False
            self._seq += 1
            db.execute(
                "INSERT INTO jobs (id, seq, state, message, traceparent, due_at, created_at, updated_at)"
                " VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, self._seq, orjson.dumps(message_to_dict(message)).decode(), traceparent,
                 now, now, now),
            )
            if self._seq % _SWEEP_EVERY == 0:
                # Expired marks would otherwise stay forever: only a re-delivery of the same id removes one.
                db.execute("DELETE FROM seen WHERE expires_at <= ?", (now,))
            db.execute("COMMIT")
            return True
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def claim(self, lease_seconds: float) -> Job | None:
        return await self._run(self._claim, lease_seconds)

    def _claim(self, lease_seconds: float) -> Job | None:
        now = self._clock()
        row = self.db.execute(
            "UPDATE jobs SET lease_until = ?, updated_at = ? WHERE id = ("
            " SELECT id FROM jobs WHERE state = 'pending' AND due_at <= ? AND lease_until <= ?"
            " ORDER BY due_at, seq LIMIT 1)"
            " RETURNING id, message, attempts, reply_text, traceparent, last_error, created_at, stream_handle",
            (now + lease_seconds, now, now, now),
        ).fetchone()
        return _job(row) if row else None

    async def save_reply(self, job_id: str, text: str) -> None:
        await self._run(self._update, "UPDATE jobs SET reply_text = ?, updated_at = ? WHERE id = ?",
                        (text, self._clock(), job_id))

    async def save_stream_handle(self, job_id: str, handle: str) -> None:
        await self._run(self._update, "UPDATE jobs SET stream_handle = ?, updated_at = ? WHERE id = ?",
                        (handle, self._clock(), job_id))

    async def complete(self, job_id: str) -> None:
        await self._run(self._update, "DELETE FROM jobs WHERE id = ?", (job_id,))

    async def retry(self, job_id: str, delay: float, error: str) -> None:
        now = self._clock()
        await self._run(
            self._update,
            "UPDATE jobs SET attempts = attempts + 1, due_at = ?, lease_until = 0, last_error = ?,"
            " updated_at = ? WHERE id = ?",
            (now + delay, error, now, job_id),
        )

    async def defer(self, job_id: str, delay: float) -> None:
        now = self._clock()
        await self._run(
            self._update,
            "UPDATE jobs SET due_at = ?, lease_until = 0, updated_at = ? WHERE id = ? AND state = 'pending'",
            (now + delay, now, job_id),
        )

    async def bury(self, job_id: str, error: str) -> None:
        await self._run(
            self._update,
            "UPDATE jobs SET state = 'dead', attempts = attempts + 1, lease_until = 0, last_error = ?,"
            " updated_at = ? WHERE id = ?",
            (error, self._clock(), job_id),
        )

    def _update(self, sql: str, params: tuple[Any, ...]) -> int:
        return self.db.execute(sql, params).rowcount

    async def dead_letters(self, limit: int = 100) -> Sequence[Job]:
        return await self._run(self._dead_letters, limit)

    def _dead_letters(self, limit: int) -> list[Job]:
        rows = self.db.execute(
            "SELECT id, message, attempts, reply_text, traceparent, last_error, created_at, stream_handle FROM jobs"
            " WHERE state = 'dead' ORDER BY updated_at LIMIT ?", (limit,),
        ).fetchall()
        return [_job(row) for row in rows]

    async def dead_letter(self, job_id: str) -> Job | None:
        rows = await self._run(self._dead_letters, 1_000_000)
        return next((job for job in rows if job.id == job_id), None)

    async def replay(self, job_id: str | None = None) -> int:
        now = self._clock()
        sql = "UPDATE jobs SET state = 'pending', attempts = 0, due_at = ?, lease_until = 0, updated_at = ?" \
              " WHERE state = 'dead'"
        params: tuple[Any, ...] = (now, now)
        if job_id is not None:
            sql += " AND id = ?"
            params += (job_id,)
        return await self._run(self._update, sql, params)

    async def purge(self, job_id: str | None = None) -> int:
        sql, params = "DELETE FROM jobs WHERE state = 'dead'", tuple[str, ...]()
        if job_id is not None:
            sql, params = sql + " AND id = ?", (job_id,)
        return await self._run(self._update, sql, params)

    async def depth(self) -> dict[str, int]:
        return await self._run(self._depth)

    def _depth(self) -> dict[str, int]:
        counts = dict(self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        return {"inbound": counts.get("pending", 0), "dead_letter": counts.get("dead", 0)}

    async def oldest_waiting_since(self) -> float | None:
        return await self._run(self._oldest_waiting_since)

    def _oldest_waiting_since(self) -> float | None:
        now = self._clock()
        row = self.db.execute(
            "SELECT MIN(due_at) FROM jobs WHERE state = 'pending' AND due_at <= ? AND lease_until <= ?", (now, now),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def sweep(self) -> int:
        """Forget de-duplication ids older than the TTL."""
        return await self._run(self._update, "DELETE FROM seen WHERE expires_at <= ?", (self._clock(),))

    async def check(self) -> None:
        """Ready only if a message could be stored now: room on the disk, and a write that commits.

        A read alone passes on a full disk; the write alone can pass too, since the WAL reuses
        space it already holds, while an admit that needs a new page fails. Both are asked.
        """
        await self._run(self._check)

    def _check(self) -> None:
        stats = os.statvfs(Path(self.path).parent)
        free = stats.f_bavail * stats.f_frsize
        if free < self.min_free_bytes:
            raise DependencyUnavailable(
                f"queue store disk nearly full: {free // 1024} KiB free, under BOT_DATA_MIN_FREE_BYTES"
            )
        self.db.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (self._clock(),))

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self.db.close)
            self._db = None
        self._closed = True
        self._executor.shutdown(wait=True)


def _job(row: tuple[Any, ...]) -> Job:
    job_id, message, attempts, reply_text, traceparent, last_error, created_at, stream_handle = row
    return Job(
        id=job_id, message=message_from_dict(orjson.loads(message)), attempts=attempts, reply_text=reply_text,
        traceparent=traceparent, last_error=last_error, created_at=created_at, stream_handle=stream_handle,
    )
