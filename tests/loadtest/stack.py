"""A bot with a sidecar in front of it, as the load tests address them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.support.processes import Process

# A rule on the chat route for tests that want the sidecar to refuse part of the load.
RULES = """\
rules:
  - name: chat_total
    routes: [/api/v1/chat]
    key: route
    limits: [{limit}/second]
    strategy: fixed-window
"""


@dataclass(frozen=True)
class Stack:
    entry: str  # the sidecar's public port: what clients load
    bot: str
    sidecar_admin: str

    def loadtest_args(self) -> list[str]:
        return ["--host", self.entry, "--bot-metrics", self.bot + "/metrics",
                "--sidecar-metrics", self.sidecar_admin + "/metrics"]


StartBot = Callable[..., tuple[Process, str]]
StartStack = Callable[..., Stack]
