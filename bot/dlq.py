"""`python -m bot dlq`: list, show, replay and purge the dead letters of the configured queue store."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

from bot.delivery.base import InboundQueue, Job
from bot.delivery.store import open_inbound_queue, sqlite_path
from bot.errors import ConfigError, DependencyUnavailable
from bot.settings import Settings, load_settings

OK, NOT_FOUND, USAGE, UNAVAILABLE = 0, 1, 2, 3
# Environment variables whose values must never be echoed, whatever a stored field contains.
_SECRET_NAMES = ("KEY", "SECRET", "TOKEN", "PASSWORD", "REDIS_URL")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser = argparse.ArgumentParser(
        prog="python -m bot dlq",
        description="Dead letters: replies given up on after the last attempt. The store is the bot's own "
        "(REDIS_URL when set, else queue.sqlite3 in BOT_DATA_DIR).",
        epilog="exit codes: 0 done, 1 no such dead letter, 2 usage, 3 store unavailable",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,show,replay,purge}")
    listing = commands.add_parser("list", parents=[common], help="list dead letters, oldest first")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    show = commands.add_parser("show", parents=[common], help="show one dead letter")
    show.add_argument("id")
    for name, verb in (("replay", "make due again (attempts start over)"), ("purge", "delete for good")):
        sub = commands.add_parser(name, parents=[common], help=f"{verb}: one dead letter, or --all")
        target = sub.add_mutually_exclusive_group(required=True)
        target.add_argument("id", nargs="?")
        target.add_argument("--all", action="store_true")
    return parser


def main(args: Sequence[str], environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """Run one dlq command; returns the exit code."""
    environ = os.environ if environ is None else environ
    out = out or sys.stdout
    try:
        options = build_parser().parse_args(list(args))
    except SystemExit as exc:  # argparse has printed the usage already
        return exc.code if isinstance(exc.code, int) else USAGE
    try:
        settings = load_settings(environ)
    except ConfigError as exc:
        print(f"botwatch dlq: {exc.message}", file=sys.stderr)
        return USAGE
    printer = _Printer(out, options.json, _secrets(environ))
    try:
        return asyncio.run(_run(options, settings, printer))
    except DependencyUnavailable as exc:
        print(f"botwatch dlq: {printer.redact(exc.message)}", file=sys.stderr)
        return UNAVAILABLE


async def _run(options: argparse.Namespace, settings: Settings, printer: _Printer) -> int:
    if settings.redis_url is None:
        path = sqlite_path(settings)
        if not path.exists():
            # Opening would create an empty store: more likely BOT_DATA_DIR points elsewhere.
            raise DependencyUnavailable(f"no queue store at {path} (check BOT_DATA_DIR)")
    queue = await open_inbound_queue(settings, recover=False)
    try:
        return await _command(queue, options, printer)
    finally:
        await queue.close()


async def _command(queue: InboundQueue, options: argparse.Namespace, printer: _Printer) -> int:
    if options.command == "list":
        jobs = await queue.dead_letters(max(0, options.limit))
        total = (await queue.depth())["dead_letter"]
        printer.listing(jobs, total)
        return OK
    if options.command == "show":
        job = await queue.dead_letter(options.id)
        if job is None:
            return printer.not_found(options.id)
        printer.detail(job)
        return OK
    target = None if options.all else options.id
    count = await (queue.replay(target) if options.command == "replay" else queue.purge(target))
    if target is not None and count == 0:
        return printer.not_found(target)
    printer.done(options.command, count)
    return OK


def _secrets(environ: Mapping[str, str]) -> list[str]:
    values = [v for k, v in environ.items() if any(n in k.upper() for n in _SECRET_NAMES) and len(v) >= 4]
    # Longest first, so a secret containing another is hidden whole.
    return sorted(set(values), key=len, reverse=True)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if timestamp else "-"


class _Printer:
    """Text for people, JSON for scripts; either way every known secret is masked."""

    def __init__(self, out: TextIO, as_json: bool, secrets: list[str]) -> None:
        self.out = out
        self.as_json = as_json
        self.secrets = secrets

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _emit(self, data: Any, text: str) -> None:
        if self.as_json:
            text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
        print(self.redact(text), file=self.out)

    def listing(self, jobs: Sequence[Job], total: int) -> None:
        rows = [("ID", "PLATFORM", "ATTEMPTS", "RECEIVED", "REASON")]
        rows += [(j.id, j.message.platform, str(j.attempts), _when(j.message.received_at),
                  _one_line(j.last_error or "-", 80)) for j in jobs]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4] for row in rows]
        shown = f"{len(jobs)} of {total}" if len(jobs) < total else str(total)
        text = f"{shown} dead letter{'s' if total != 1 else ''}" + ("\n" + "\n".join(lines) if jobs else "")
        self._emit({"total": total, "dead_letters": [_summary(j) for j in jobs]}, text)

    def detail(self, job: Job) -> None:
        data = _summary(job) | {
            "chat_id": job.message.chat_id, "user_id": job.message.user_id, "text": job.message.text,
            "reply_text": job.reply_text, "traceparent": job.traceparent,
            "reply_handle_keys": sorted(job.message.reply_handle),
        }
        handle = ", ".join(f"{key}=***" for key in data["reply_handle_keys"]) or "-"
        text = "\n".join([
            f"id:           {job.id}",
            f"platform:     {job.message.platform}",
            f"message id:   {job.message.message_id}",
            f"chat / user:  {job.message.chat_id} / {job.message.user_id}",
            f"received:     {_when(job.message.received_at)}",
            f"attempts:     {job.attempts}",
            f"reason:       {job.last_error or '-'}",
            f"text:         {job.message.text}",
            f"saved reply:  {job.reply_text if job.reply_text is not None else '- (the model is asked on replay)'}",
            f"reply handle: {handle}",
            f"traceparent:  {job.traceparent or '-'}",
        ])
        self._emit(data, text)

    def done(self, command: str, count: int) -> None:
        verb = "replayed" if command == "replay" else "purged"
        self._emit({verb: count}, f"{verb} {count} dead letter{'s' if count != 1 else ''}")

    def not_found(self, job_id: str) -> int:
        self._emit({"error": "not_found", "id": job_id}, f"no dead letter with id {job_id}")
        return NOT_FOUND


def _summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "platform": job.message.platform, "message_id": job.message.message_id,
        "attempts": job.attempts, "reason": job.last_error, "received_at": job.message.received_at,
        "created_at": job.created_at,
    }


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
