"""Hostile callbacks to each platform's webhook on a real bot: a 2xx or a JSON 4xx, never a 5xx or a hang.

Adding a platform is one entry in TARGETS: the environment that switches it on, and a strategy of
requests reaching its verifier and decoder (valid credentials around hostile bodies, and hostile
everything). tests/support/hostile.py has shared material (bytes, JSON, deep nesting, XML bombs).
Signed requests carry genuine signatures made the way each platform's own tests make them, so the
fuzzing gets past the signature check to the decryption and the parser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bot.platforms.dingtalk import conftest as dingtalk_platform
from tests.bot.platforms.feishu import conftest as feishu_platform
from tests.bot.platforms.qq import fake_qq as qq_platform
from tests.bot.platforms.slack import conftest as slack_platform
from tests.bot.platforms.telegram import conftest as telegram_platform
from tests.bot.platforms.wecom import conftest as wecom_platform
from tests.support.bots import running_bot
from tests.support.hostile import (
    encode,
    field_values,
    header_text,
    hostile_bodies,
    inner_bodies,
    json_values,
    mutated,
    odd_text,
)
from tests.support.ports import free_port
from tests.support.raw_http import assert_clean_rejection_or_success, exchange

MAX_BODY = 64 * 1024
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    target: str  # path and query string
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class FuzzTarget:
    platform: str
    env: dict[str, str]  # switches the platform on; merged into one bot for every target
    route: str  # where its callbacks arrive (POST)
    requests: st.SearchStrategy[FuzzRequest] = field(repr=False)
    # What fuzzing once found, kept so it is checked on every run (built when sent: timestamps age).
    found: tuple[Callable[[], FuzzRequest], ...] = field(default=(), repr=False)


def _example_requests() -> st.SearchStrategy[FuzzRequest]:
    token = st.sampled_from(["example-fuzz-token", "", "wrong", "example-fuzz-token\u00e9"])
    fields = st.fixed_dictionaries({}, optional={name: json_values for name in ("id", "chat", "user", "text", "type")})
    bodies = st.one_of(hostile_bodies, fields.map(encode))
    return st.builds(
        lambda tok, body, ctype: FuzzRequest(
            "POST", "/example/hook",
            {**({"X-Example-Token": tok} if tok.isascii() else {}), "Content-Type": ctype}, body,
        ),
        token, bodies, st.sampled_from(["application/json", "text/xml", "application/octet-stream"]),
    )


def _request(path: str, headers: dict[str, str]) -> Callable[[bytes], FuzzRequest]:
    return lambda body: FuzzRequest("POST", path, headers, body)


def _forged_headers(*names: str) -> st.SearchStrategy[dict[str, str]]:
    """Any subset of a platform's credential headers, with odd values; JSON content type."""
    values = st.one_of(header_text, st.integers(-(2**64), 2**64).map(str), st.just(str(int(time.time()))))
    return st.fixed_dictionaries({"Content-Type": st.just("application/json")},
                                 optional={name: values for name in names})


def _forged(path: str, *names: str) -> st.SearchStrategy[FuzzRequest]:
    return st.builds(lambda body, headers: FuzzRequest("POST", path, headers, body),
                     hostile_bodies, _forged_headers(*names))


def _truncated(ciphertexts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda text, cut: text[:int(len(text) * cut)], ciphertexts, st.floats(0, 1))


def _bit_flipped(ciphertexts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def flip(text: str, at: float) -> str:
        raw = bytearray(base64.b64decode(text))
        raw[int((len(raw) - 1) * at)] ^= 0x01
        return base64.b64encode(bytes(raw)).decode()

    return st.builds(flip, ciphertexts, st.floats(0, 1))


def _cbc(key: bytes, iv: bytes, blocks: bytes) -> bytes:
    """AES-CBC over whole blocks as given: no padding added, so a bad one stays bad."""
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(blocks) + encryptor.finalize()


whole_blocks = st.binary(min_size=16, max_size=512).map(lambda raw: raw[: len(raw) // 16 * 16])
# Encodable text: it also travels in a query string and through wechatpy's signer.
not_base64 = st.one_of(st.text(st.characters(codec="utf-8"), max_size=64), st.text("ABCDEFabcdef0123456789+/=", max_size=90))


def _feishu_requests() -> st.SearchStrategy[FuzzRequest]:
    key = hashlib.sha256(feishu_platform.ENCRYPT_KEY.encode()).digest()
    event = feishu_platform.text_event("ev-fuzz")
    plaintexts = st.one_of(
        inner_bodies,
        mutated(event).map(encode),
        # Hostile text inside the message's own JSON-in-a-string content.
        field_values.map(lambda text: encode(event | {"event": event["event"] | {
            "message": event["event"]["message"] | {"content": json.dumps({"text": text})}}})),
    )
    valid = plaintexts.map(feishu_platform.encrypt)
    ciphertexts = st.one_of(
        valid, _truncated(valid), _bit_flipped(valid), not_base64,
        # Wrong padding: random blocks under the right key.
        st.builds(lambda iv, blocks: base64.b64encode(iv + _cbc(key, iv, blocks)).decode(),
                  st.binary(min_size=16, max_size=16), whole_blocks),
    )
    envelopes = st.one_of(ciphertexts.map(lambda text: {"encrypt": text}), json_values.map(lambda v: {"encrypt": v}))
    bodies = st.one_of(envelopes.map(encode), hostile_bodies, plaintexts)
    signed = bodies.map(lambda body: FuzzRequest("POST", "/feishu/event", feishu_platform.sign(body), body))
    return st.one_of(signed, _forged("/feishu/event", "X-Lark-Request-Timestamp", "X-Lark-Request-Nonce",
                                     "X-Lark-Signature"))


def _dingtalk_requests() -> st.SearchStrategy[FuzzRequest]:
    message = dingtalk_platform.payload("text_group", **dingtalk_platform.live_session(DEAD_END, "fuzz"))
    bodies = st.one_of(hostile_bodies, mutated(message).map(encode))
    signed = bodies.map(lambda body: FuzzRequest("POST", "/dingtalk/callback", dingtalk_platform.signed_headers(), body))
    return st.one_of(signed, _forged("/dingtalk/callback", "timestamp", "sign"))


def _wecom_blob(plain: bytes, corp_id: bytes, pad: bytes | None) -> str:
    """WeCom's layout around any bytes; `pad` replaces the correct PKCS#7 (32-byte blocks) padding."""
    key = base64.b64decode(wecom_platform.AES_KEY + "=")
    content = bytes(16) + struct.pack(">I", len(plain)) + plain + corp_id
    correct = 32 - len(content) % 32
    padded = content + (bytes([correct]) * correct if pad is None else pad)
    padded += bytes(-len(padded) % 16)
    return base64.b64encode(_cbc(key, key[:16], padded)).decode()


def _wecom_requests() -> st.SearchStrategy[FuzzRequest]:
    corp_id = wecom_platform.CORP_ID.encode()
    xml_text = st.text(st.characters(codec="utf-8"), max_size=200)
    plaintexts = st.one_of(
        inner_bodies,
        st.builds(lambda tag, value: wecom_platform.recorded("text.xml", **{tag: value}).encode(),
                  st.sampled_from(["Content", "FromUserName", "MsgType", "MsgId", "CreateTime"]),
                  st.one_of(xml_text, st.integers(500, 4000).map(lambda n: "x" * n))),
    )
    valid = st.builds(_wecom_blob, plaintexts, st.just(corp_id), st.none())
    broken = st.one_of(
        _truncated(valid), _bit_flipped(valid), not_base64,
        st.builds(_wecom_blob, plaintexts, st.binary(max_size=40), st.none()),  # another corp's id
        st.builds(_wecom_blob, plaintexts, st.just(corp_id), st.binary(min_size=1, max_size=40)),  # wrong padding
        # A length field pointing past the end of the plaintext.
        st.builds(lambda raw: _wecom_blob(b"", raw, None), st.binary(min_size=4, max_size=64)),
    )

    def post(encrypt: str) -> FuzzRequest:
        target = wecom_platform.callback_url(wecom_platform.signed(encrypt))
        return FuzzRequest("POST", target, {"Content-Type": "text/xml"}, wecom_platform.envelope(encrypt))

    def get(echostr: str) -> FuzzRequest:
        return FuzzRequest("GET", wecom_platform.callback_url({**wecom_platform.signed(echostr), "echostr": echostr}),
                           {}, b"")

    def unsigned(body: bytes, query: dict[str, str]) -> FuzzRequest:
        return FuzzRequest("POST", "/wecom/callback?" + urlencode(query), {"Content-Type": "text/xml"}, body)

    query = st.fixed_dictionaries({}, optional={name: odd_text for name in ("msg_signature", "timestamp", "nonce")})
    return st.one_of(valid.map(post), broken.map(post), valid.map(get), broken.map(get),
                     st.builds(unsigned, hostile_bodies, query))


def _slack_signed(body: bytes) -> dict[str, str]:
    """slack-sdk's signature where it can make one (it reads the body as UTF-8); Slack's formula otherwise."""
    try:
        return slack_platform.signed(body)
    except UnicodeDecodeError:
        stamp = str(int(time.time()))
        digest = hmac.new(slack_platform.SIGNING_SECRET.encode(), b"v0:" + stamp.encode() + b":" + body,
                          hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + digest,
                "Content-Type": "application/json"}


def _slack_requests() -> st.SearchStrategy[FuzzRequest]:
    events = [json.loads((slack_platform.DATA / name).read_text()) for name in ("app_mention.json", "message_im.json")]
    bodies = st.one_of(hostile_bodies, st.sampled_from(events).flatmap(mutated).map(encode))
    signed = bodies.map(lambda body: FuzzRequest("POST", "/slack/events", _slack_signed(body), body))
    return st.one_of(signed, _forged("/slack/events", "X-Slack-Request-Timestamp", "X-Slack-Signature"))


def _telegram_requests() -> st.SearchStrategy[FuzzRequest]:
    bodies = st.one_of(hostile_bodies, mutated(telegram_platform.recorded("private_text.json")).map(encode))
    return st.one_of(bodies.map(_request("/telegram/webhook", telegram_platform.HEADERS)),
                     _forged("/telegram/webhook", "X-Telegram-Bot-Api-Secret-Token"))


def _qq_requests() -> st.SearchStrategy[FuzzRequest]:
    payloads = [qq_platform.event(name) for name in ("group_at_message_create.json", "c2c_message_create.json")]
    payloads.append(qq_platform.load("callback_validation.json")["payload"])
    bodies = st.one_of(hostile_bodies, st.sampled_from(payloads).flatmap(mutated).map(qq_platform.encode))
    signed = bodies.map(lambda body: FuzzRequest("POST", "/qq/callback", qq_platform.signed_headers(body), body))
    return st.one_of(signed, _forged("/qq/callback", "X-Signature-Ed25519", "X-Signature-Timestamp", "X-Bot-Appid"))


def _feishu_found() -> tuple[Callable[[], FuzzRequest], ...]:
    def odd_nonce() -> FuzzRequest:
        # A byte that is not UTF-8 in a header the signature covers.
        headers = {"X-Lark-Request-Timestamp": str(int(time.time())), "X-Lark-Request-Nonce": "\x80",
                   "X-Lark-Signature": "0" * 64, "Content-Type": "application/json"}
        return FuzzRequest("POST", "/feishu/event", headers, b"{}")

    return (odd_nonce,)


def _slack_found() -> tuple[Callable[[], FuzzRequest], ...]:
    def event_typed(value: Any) -> Callable[[], FuzzRequest]:
        def build() -> FuzzRequest:
            body = slack_platform.recorded("message_im.json", type=value)
            return FuzzRequest("POST", "/slack/events", _slack_signed(body), body)

        return build

    return event_typed({"a": 1}), event_typed(["message"])


def _qq_found() -> tuple[Callable[[], FuzzRequest], ...]:
    def event_typed(value: Any) -> Callable[[], FuzzRequest]:
        def build() -> FuzzRequest:
            body = qq_platform.encode(qq_platform.event("group_at_message_create.json") | {"t": value})
            return FuzzRequest("POST", "/qq/callback", qq_platform.signed_headers(body), body)

        return build

    def lone_surrogate() -> FuzzRequest:
        body = qq_platform.encode(qq_platform.event("group_at_message_create.json") | {"id": "\ud800"})
        return FuzzRequest("POST", "/qq/callback", qq_platform.signed_headers(body), body)

    return event_typed(["GROUP_AT_MESSAGE_CREATE"]), event_typed({"a": 1}), lone_surrogate


# Replies to fuzzed messages that do get through go here, where nothing listens (once each).
DEAD_END = f"http://127.0.0.1:{free_port()}"

TARGETS = [
    FuzzTarget("example", {"EXAMPLE_TOKEN": "example-fuzz-token", "EXAMPLE_API_BASE": DEAD_END},
               "/example/hook", _example_requests()),
    FuzzTarget("feishu", feishu_platform.env(DEAD_END), "/feishu/event", _feishu_requests(), _feishu_found()),
    FuzzTarget("dingtalk", dingtalk_platform.env(DEAD_END), "/dingtalk/callback", _dingtalk_requests()),
    FuzzTarget("wecom", wecom_platform.env(DEAD_END), "/wecom/callback", _wecom_requests()),
    FuzzTarget("slack", slack_platform.env(DEAD_END), "/slack/events", _slack_requests(), _slack_found()),
    FuzzTarget("telegram", telegram_platform.env(DEAD_END), "/telegram/webhook", _telegram_requests()),
    FuzzTarget("qq", qq_platform.QQOpenPlatform().env(DEAD_END), "/qq/callback", _qq_requests(), _qq_found()),
]


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "BOT_MAX_BODY_BYTES": str(MAX_BODY), "BOT_READ_TIMEOUT": "2",
        "DELIVERY_MAX_ATTEMPTS": "1",
    }
    for target in TARGETS:
        env.update(target.env)
    with running_bot(tmp_path_factory.mktemp("webhook-fuzz"), env, "tests.support.bot_with_example") as base:
        yield base


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.platform)
# A failing example is a request of up to 64 KiB: Hypothesis warns when it prints one.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
def test_hostile_callbacks_get_a_2xx_or_a_json_4xx(bot: str, target: FuzzTarget) -> None:
    @FUZZ
    @given(request=target.requests)
    def check(request: FuzzRequest) -> None:
        answer = exchange(bot, request.method, request.target, request.body, request.headers)
        assert_clean_rejection_or_success(answer)

    check()


FOUND = [(target.platform, build) for target in TARGETS for build in target.found]


@pytest.mark.parametrize(("platform", "build"), FOUND, ids=[f"{p}-{i}" for i, (p, _) in enumerate(FOUND)])
def test_inputs_fuzzing_once_found_stay_answered_with_a_json_4xx_or_an_ack(
    bot: str, platform: str, build: Callable[[], FuzzRequest]
) -> None:
    request = build()
    assert_clean_rejection_or_success(exchange(bot, request.method, request.target, request.body, request.headers))


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.platform)
def test_a_body_over_the_limit_is_413(bot: str, target: FuzzTarget) -> None:
    answer = exchange(bot, "POST", target.route, b"{" + b" " * MAX_BODY + b"}", {"Content-Type": "application/json"})
    assert_clean_rejection_or_success(answer)
    assert answer.status == 413
