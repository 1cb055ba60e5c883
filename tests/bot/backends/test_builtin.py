"""The built-in responder: offline, deterministic, and visibly multi-turn."""

from __future__ import annotations

from bot.backends.builtin import BuiltinBackend
from bot.messages import Turn


async def test_echoes_with_the_turn_number() -> None:
    turns = [Turn("user", "a"), Turn("assistant", "x"), Turn("user", "b")]
    completion = await BuiltinBackend().complete(turns)
    assert completion.text == "[built-in responder] turn 2: you said: b"


async def test_help_says_it_is_the_built_in_responder() -> None:
    completion = await BuiltinBackend().complete([Turn("user", "help")])
    assert "built-in responder" in completion.text
    assert "MODEL_ENDPOINT" in completion.text


async def test_same_input_same_output() -> None:
    backend = BuiltinBackend()
    turns = [Turn("user", "你好")]
    assert (await backend.complete(turns)) == (await backend.complete(turns))
