"""The built-in responder: deterministic, offline, needs no key."""

from __future__ import annotations

from collections.abc import Sequence

from bot.messages import Completion, Turn

HELP_TEXT = (
    "I am botwatch's built-in responder (no model is configured). "
    "I echo what you say with the turn number, so you can see the conversation is remembered. "
    "Set MODEL_ENDPOINT and MODEL_API_KEY to answer with an OpenAI-compatible model. "
    "Say 'help' to see this again; use a new session_id to start over."
)
_HELP_WORDS = frozenset({"help", "/help", "?", "帮助"})


class BuiltinBackend:
    """Answers from rules alone, so the service runs and can be tested with nothing else."""

    name = "builtin"

    async def complete(self, turns: Sequence[Turn]) -> Completion:
        user_turns = sum(1 for turn in turns if turn.role == "user")
        text = turns[-1].content.strip() if turns else ""
        if text.lower() in _HELP_WORDS:
            reply = HELP_TEXT
        else:
            reply = f"[built-in responder] turn {user_turns}: you said: {text}"
        # A rough count (4 characters a token) is enough for the token metrics of a responder that has none.
        prompt_tokens = sum(len(turn.content) for turn in turns) // 4
        return Completion(reply, prompt_tokens=prompt_tokens, completion_tokens=len(reply) // 4)

    async def check(self) -> None:
        return None
