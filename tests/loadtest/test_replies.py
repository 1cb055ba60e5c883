"""The reply gate: callbacks tagged with a reference, replies matched by it, judged on slo.yaml's reply objective."""

from __future__ import annotations

import json

from loadtest.replies import ReplyGate, judge_replies, load_reply_gate, references, reply_figures, tag

GATE = ReplyGate(objective=0.99, threshold_s=10.0)


def test_the_reference_survives_every_platform_format_of_the_reply() -> None:
    text, ref = tag("你好, where is my order?")
    assert text.endswith(f"[ref {ref}]") and len(ref) == 16
    reply = f"[built-in responder] turn 1: you said: {text}"
    feishu = json.dumps({"msg_type": "text", "content": json.dumps({"text": reply})}).encode()
    wecom = json.dumps({"touser": "u", "text": {"content": reply}}, ensure_ascii=False).encode()
    telegram = json.dumps({"chat_id": 1, "text": reply}).encode()
    for body in (feishu, wecom, telegram):
        assert references(body) == [ref]


def test_the_gate_reads_the_reply_objective_from_slo_yaml() -> None:
    assert load_reply_gate() == GATE


def test_99_percent_within_the_threshold_passes_and_98_fails() -> None:
    sent = {f"{i:016x}": 1000.0 for i in range(100)}
    arrived = {ref: 1001.0 for ref in sent}
    arrived["0000000000000000"] = 1010.5  # one slow reply of 100: 99 % within
    passed, line = judge_replies(reply_figures(sent, arrived, GATE), GATE)
    assert passed, line
    assert line.startswith("replies: 100 of 100 answered, 99.00% within 10 s (objective 99 % within 10 s)")
    arrived["0000000000000001"] = 1010.5
    passed, line = judge_replies(reply_figures(sent, arrived, GATE), GATE)
    assert not passed
    assert line.endswith("98.00% of replies within 10 s < 99%")


def test_a_callback_that_never_got_a_reply_fails_the_gate() -> None:
    sent = {f"{i:016x}": 1000.0 for i in range(200)}
    arrived = {ref: 1000.5 for ref in list(sent)[1:]}
    passed, line = judge_replies(reply_figures(sent, arrived, GATE), GATE)
    assert not passed
    assert "1 callbacks never got a reply" in line
