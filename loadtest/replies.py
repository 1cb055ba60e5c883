"""The reply gate: every platform callback of a run must get its reply, within slo.yaml's reply objective.

Each callback's text carries a reference (`[ref 0123456789abcdef]`) that a model repeating the
question (the built-in responder, an echoing stand-in) carries into the reply; the platform API
stand-in notes when a reply with each reference arrived (`GET /_replies`). A reply's time is that
arrival less the moment the callback was posted: what the user waits, measured outside the bot.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loadtest.record import exact_percentile
from loadtest.slo import SLO_FILE

REFERENCE = re.compile(r"\[ref ([0-9a-f]{16})\]")
SENT_FILE = "replies_sent.json"


def tag(text: str) -> tuple[str, str]:
    """The text with a fresh reference appended, and the reference."""
    ref = secrets.token_hex(8)
    return f"{text} [ref {ref}]", ref


def references(body: bytes) -> list[str]:
    """The references quoted in a reply's raw body, whatever the platform's format."""
    return REFERENCE.findall(body.decode("utf-8", "replace"))


@dataclass(frozen=True)
class ReplyGate:
    objective: float
    threshold_s: float


def load_reply_gate(path: Path = SLO_FILE) -> ReplyGate:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return ReplyGate(float(data["reply"]["objective"]), float(data["reply"]["threshold_seconds"]))
    except KeyError as exc:
        raise SystemExit(f"{path}: missing key {exc.args[0]!r} needed by the reply gate") from None


@dataclass(frozen=True)
class ReplyFigures:
    sent: int
    answered: int
    within: int
    p50_s: float
    p99_s: float

    @property
    def share_within(self) -> float:
        return self.within / self.sent if self.sent else math.nan


def reply_figures(sent: dict[str, float], arrived: dict[str, float], gate: ReplyGate) -> ReplyFigures:
    latencies = [arrived[ref] - at for ref, at in sent.items() if ref in arrived]
    return ReplyFigures(
        sent=len(sent), answered=len(latencies), within=sum(1 for x in latencies if x <= gate.threshold_s),
        p50_s=exact_percentile(latencies, 0.5), p99_s=exact_percentile(latencies, 0.99),
    )


def judge_replies(figures: ReplyFigures, gate: ReplyGate) -> tuple[bool, str]:
    """Passed, and one line: the share within the threshold against the objective, and any reply missing."""
    share = f"{gate.objective * 100:g} % within {gate.threshold_s:g} s"
    if figures.sent == 0:
        return True, "replies: no platform callback in this run"
    line = (f"replies: {figures.answered} of {figures.sent} answered, {figures.share_within:.2%} within "
            f"{gate.threshold_s:g} s (objective {share}), p50 {figures.p50_s:.3f} s, p99 {figures.p99_s:.3f} s")
    failures = []
    if figures.answered < figures.sent:
        failures.append(f"{figures.sent - figures.answered} callbacks never got a reply")
    if figures.share_within < gate.objective:
        failures.append(f"{figures.share_within:.2%} of replies within {gate.threshold_s:g} s < {gate.objective:.0%}")
    if failures:
        return False, line + " — " + "; ".join(failures)
    return True, line


def fetch_arrivals(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: dict[str, float] = json.loads(resp.read())
    return data


def await_replies(url: str, sent: dict[str, float], gate: ReplyGate) -> dict[str, float]:
    """The arrivals once every reply came, or once the last one is past the threshold anyway."""
    deadline = (max(sent.values()) if sent else time.time()) + gate.threshold_s
    arrived = fetch_arrivals(url)
    while not set(sent) <= set(arrived) and time.time() < deadline:
        time.sleep(0.25)
        arrived = fetch_arrivals(url)
    return arrived


def load_sent(record_dir: Path) -> dict[str, float]:
    path = record_dir / SENT_FILE
    if not path.exists():
        return {}
    data: dict[str, float] = json.loads(path.read_text(encoding="utf-8"))
    return data
