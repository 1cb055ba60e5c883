"""`python -m bot dlq`, run as a real process against a store holding dead letters."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from bot.delivery.base import InboundQueue
from bot.delivery.store import open_inbound_queue
from bot.messages import InboundMessage
from bot.settings import load_settings
from tests.support.processes import ROOT, python_module

API_KEY = "sk-dlq-api-key-0123456789"
HANDLE_SECRET = "https://hooks.example.invalid/session?token=handle-secret-42"


@dataclass
class DeadLetters:
    env: dict[str, str]
    queue: InboundQueue
    ids: list[str]  # oldest first


@pytest.fixture(params=["sqlite", "redis"])
async def dead_letters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DeadLetters]:
    env = {"BOT_DATA_DIR": str(tmp_path / "data"), "BOT_API_KEY": API_KEY}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    queue = await open_inbound_queue(load_settings(env))
    ids = []
    for i, reason in enumerate(["platform API answered HTTP 503", f"token {API_KEY} refused"]):
        await queue.admit(InboundMessage(
            platform="example", message_id=f"m-{i}", chat_id="c-1", user_id="u-1", text=f"question {i}",
            received_at=1_767_225_600.0 + i, reply_handle={"session_webhook": HANDLE_SECRET},
        ), None)
        job = await queue.claim(60)
        assert job is not None
        if i == 0:
            await queue.save_reply(job.id, "the saved answer")
        await queue.bury(job.id, reason)
        ids.append(job.id)
    yield DeadLetters(env, queue, ids)
    await queue.close()


def dlq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_module("bot", "dlq", *args), env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )


def assert_no_secrets(result: subprocess.CompletedProcess[str]) -> None:
    for secret in (API_KEY, HANDLE_SECRET, "handle-secret-42"):
        assert secret not in result.stdout + result.stderr


async def test_list_shows_every_dead_letter_with_its_reason_and_no_secret(dead_letters: DeadLetters) -> None:
    result = dlq(dead_letters.env, "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2 dead letters"
    assert lines[1].split() == ["ID", "PLATFORM", "ATTEMPTS", "RECEIVED", "REASON"]
    assert [line.split()[0] for line in lines[2:]] == dead_letters.ids
    assert lines[2].split()[1:6] == ["example", "1", "2026-01-01", "00:00:00", "UTC"]
    assert lines[2].endswith("platform API answered HTTP 503")
    assert lines[3].endswith("token *** refused")
    assert_no_secrets(result)


async def test_list_json_is_machine_readable(dead_letters: DeadLetters) -> None:
    result = dlq(dead_letters.env, "list", "--json", "--limit", "1")
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert data["total"] == 2
    [first] = data["dead_letters"]
    assert first["id"] == dead_letters.ids[0]
    assert (first["platform"], first["message_id"], first["attempts"], first["reason"]) == (
        "example", "m-0", 1, "platform API answered HTTP 503",
    )


async def test_show_prints_one_dead_letter_hiding_its_reply_handle(dead_letters: DeadLetters) -> None:
    text = dlq(dead_letters.env, "show", dead_letters.ids[0])
    assert text.returncode == 0, text.stderr
    assert "question 0" in text.stdout and "the saved answer" in text.stdout
    assert "reply handle: session_webhook=***" in text.stdout
    assert_no_secrets(text)
    as_json = dlq(dead_letters.env, "show", dead_letters.ids[1], "--json")
    data = orjson.loads(as_json.stdout)
    assert (data["reason"], data["reply_text"], data["reply_handle_keys"]) == (
        "token *** refused", None, ["session_webhook"],
    )
    assert_no_secrets(as_json)


async def test_replay_one_makes_it_due_again_and_leaves_the_others(dead_letters: DeadLetters) -> None:
    result = dlq(dead_letters.env, "replay", dead_letters.ids[0])
    assert (result.returncode, result.stdout.strip()) == (0, "replayed 1 dead letter")
    assert [job.id for job in await dead_letters.queue.dead_letters()] == dead_letters.ids[1:]
    job = await dead_letters.queue.claim(60)
    assert job is not None
    assert (job.id, job.attempts, job.reply_text) == (dead_letters.ids[0], 0, "the saved answer")


async def test_purge_all_empties_the_dead_letters(dead_letters: DeadLetters) -> None:
    result = dlq(dead_letters.env, "purge", "--all", "--json")
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == {"purged": 2}
    assert await dead_letters.queue.depth() == {"inbound": 0, "dead_letter": 0}


@pytest.mark.parametrize("dead_letters", ["sqlite"], indirect=True)
async def test_an_unknown_id_exits_1(dead_letters: DeadLetters) -> None:
    for command in ("show", "replay", "purge"):
        result = dlq(dead_letters.env, command, "no-such-id")
        assert (result.returncode, result.stdout.strip()) == (1, "no dead letter with id no-such-id")
    assert len(await dead_letters.queue.dead_letters()) == 2


@pytest.mark.parametrize(
    "args", [["frobnicate"], ["replay"], ["purge", "some-id", "--all"]]
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = dlq({"BOT_DATA_DIR": str(tmp_path)}, *args)
    assert result.returncode == 2
    assert "usage: python -m bot dlq" in result.stderr


def test_an_unreachable_store_exits_3_without_creating_one(tmp_path: Path) -> None:
    result = dlq({"BOT_DATA_DIR": str(tmp_path / "nowhere")}, "list")
    assert result.returncode == 3
    assert "no queue store at" in result.stderr
    assert not (tmp_path / "nowhere").exists()
