"""Multi-turn conversations the chat users hold, so sessions grow the way real ones do."""

from __future__ import annotations

import random

# Short support-desk exchanges in the languages the platforms' users write; each later turn leans
# on the earlier ones, so the session store and the prompt both grow over a conversation.
CONVERSATIONS: tuple[tuple[str, ...], ...] = (
    (
        "Hi, I can't log in to the admin console since this morning.",
        "It says my password expired, but the reset mail never arrives.",
        "I checked the spam folder too. Can you resend it to my work address?",
        "Got it, thanks! Will the old API keys keep working?",
    ),
    (
        "你好，我们的群机器人今天突然不回复消息了。",
        "回调地址没有改过，日志里看到很多签名失败。",
        "是不是时间戳的问题？服务器时间好像差了十分钟。",
        "同步了时间以后恢复了，谢谢！",
    ),
    (
        "What's the difference between the standard and the pro plan?",
        "Does pro include the Feishu and DingTalk connectors?",
        "And how many messages per month before we get throttled?",
    ),
    (
        "请帮我总结一下昨天的值班记录。",
        "只要列出 P1 级别的告警就行。",
        "再按服务分一下组。",
        "好的，把结果发到运维群里。",
        "谢谢",
    ),
    (
        "Can you translate 'the deployment finished without errors' into Japanese?",
        "And into Korean?",
        "Make the Japanese one a bit more formal please.",
    ),
    (
        "企业微信里怎么把机器人加到外部群？",
        "我是管理员，但在应用管理里找不到这个选项。",
        "明白了，需要先开通客户联系权限。",
    ),
)


class Conversation:
    """One user's walk through a conversation; `next_message` starts a new one when it ends."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._turns: tuple[str, ...] = ()
        self._at = 0
        self.number = 0

    def next_message(self) -> tuple[str, bool]:
        """The next message and whether it opens a new conversation (a new session)."""
        fresh = self._at >= len(self._turns)
        if fresh:
            self._turns = self._rng.choice(CONVERSATIONS)
            self._at = 0
            self.number += 1
        message = self._turns[self._at]
        self._at += 1
        return message, fresh
