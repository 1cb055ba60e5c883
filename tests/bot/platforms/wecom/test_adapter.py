"""WeCom end to end: genuine wechatpy callbacks in, empty ACK out, the reply through gettoken + message/send."""

from __future__ import annotations

import base64
import io
import time
from urllib.parse import quote

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto

from tests.bot.conftest import sample
from tests.bot.platforms.harness import (
    PlatformLoop,
    Script,
    assert_answered_once,
    assert_nothing_leaks,
    assert_rejected,
    capture_everything,
    until,
)
from tests.bot.platforms.wecom.conftest import (
    ACCESS_TOKEN,
    AES_KEY,
    AGENT_ID,
    CORP_ID,
    DATA,
    OFFICIAL,
    SECRET,
    SECRETS,
    TOKEN,
    callback_url,
    encrypted,
    envelope,
    recorded,
    signed,
    token_answer,
)

SEND = "/cgi-bin/message/send"
GETTOKEN = "/cgi-bin/gettoken"


async def post_message(wecom: PlatformLoop, plaintext: str, **options: object) -> tuple[int, bytes, str]:
    encrypt, query = encrypted(plaintext, **options)  # type: ignore[arg-type]
    resp = await wecom.client.post(callback_url(query), data=envelope(encrypt))
    return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


def echostr_with_plus(plaintext: str) -> tuple[str, dict[str, str]]:
    """A genuine echostr that contains '+', the character the query pitfall mangles."""
    for attempt in range(200):
        encrypt, query = encrypted(plaintext, nonce=f"n{attempt}")
        if "+" in encrypt:
            return encrypt, query
    raise AssertionError("wechatpy never produced a '+'")


async def test_url_verification_returns_the_decrypted_echostr_exactly(wecom: PlatformLoop) -> None:
    echostr, query = echostr_with_plus("8347720936512458823")
    started = time.perf_counter()
    resp = await wecom.client.get(callback_url({**query, "echostr": echostr}))
    assert time.perf_counter() - started < 1.0  # WeCom's deadline for the echo
    assert resp.status == 200
    assert await resp.read() == b"8347720936512458823"  # no quotes, BOM or newline
    assert resp.content_type == "text/plain"
    # wechatpy, acting as WeCom, accepts the same signature and recovers the same text.
    assert WeChatCrypto(TOKEN, AES_KEY, CORP_ID).check_signature(
        query["msg_signature"], query["timestamp"], query["nonce"], echostr) in ("8347720936512458823",
                                                                                 b"8347720936512458823")
    assert wecom.api.requests == []


async def test_url_verification_survives_an_unencoded_plus_in_echostr(wecom: PlatformLoop) -> None:
    echostr, query = echostr_with_plus("6220001")
    # Sent as a raw '+', which query decoding turns into a space.
    raw_query = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()) + "&echostr=" + quote(
        echostr, safe="+")
    assert "+" in raw_query.split("echostr=")[1]
    resp = await wecom.client.get("/wecom/callback?" + raw_query)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == b"6220001"


async def test_url_verification_survives_a_proxy_that_turned_plus_into_space(wecom: PlatformLoop) -> None:
    echostr, query = echostr_with_plus("6220002")
    resp = await wecom.client.get(callback_url({**query, "echostr": echostr.replace("+", " ")}))
    assert resp.status == 200, await resp.text()
    assert await resp.read() == b"6220002"


async def test_a_text_message_is_acked_empty_and_answered_through_message_send(
    wecom: PlatformLoop, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    status, body, _ = await post_message(wecom, recorded("text.xml"))
    assert (status, body) == (200, b"")
    [sent] = await wecom.api.wait_for(SEND)
    [token_call] = wecom.api.calls(GETTOKEN)
    assert token_call.query == {"corpid": CORP_ID, "corpsecret": SECRET}
    assert sent.query == {"access_token": ACCESS_TOKEN}
    assert sent.json() == {
        "touser": "mycreate", "msgtype": "text", "agentid": int(AGENT_ID),
        "text": {"content": "[built-in responder] turn 1: you said: hello"}, "safe": 0,
    }
    await until(lambda: sample(wecom.registry, "bot_delivery_attempts_total", platform="wecom",
                               outcome="delivered") == 1)
    assert_nothing_leaks(SECRETS, caplog, wecom.metrics_text())


async def test_events_and_non_text_messages_are_acked_and_not_answered(wecom: PlatformLoop) -> None:
    for name in ("event_enter_agent.xml", "image.xml"):
        assert (await post_message(wecom, recorded(name)))[:2] == (200, b"")
    status, _, _ = await post_message(wecom, recorded("text.xml", MsgId="1", Content="after"))
    assert status == 200
    [sent] = await wecom.api.wait_for(SEND)
    assert "after" in sent.json()["text"]["content"]


async def test_the_same_message_three_times_two_concurrently_is_answered_once(wecom: PlatformLoop) -> None:
    # Each copy is encrypted afresh (new random prefix, new nonce) as WeCom's re-sends are.
    async def duplicate() -> object:
        encrypt, query = encrypted(recorded("text.xml", MsgId="777", Content="dup"))
        return await wecom.client.post(callback_url(query), data=envelope(encrypt))

    async def other() -> object:
        encrypt, query = encrypted(recorded("text.xml", MsgId="778", Content="other"))
        return await wecom.client.post(callback_url(query), data=envelope(encrypt))

    replies = await assert_answered_once(wecom, SEND, duplicate, other)  # type: ignore[arg-type]
    assert [r["text"]["content"][-5:] for r in replies] == [": dup", "other"]


async def test_one_token_fetch_serves_several_replies(wecom: PlatformLoop) -> None:
    for n in range(3):
        await post_message(wecom, recorded("text.xml", MsgId=f"90{n}", Content=f"m{n}"))
    await wecom.api.wait_for(SEND, count=3)
    assert len(wecom.api.calls(GETTOKEN)) == 1


async def test_a_token_about_to_expire_is_refreshed_before_use(wecom: PlatformLoop, gettoken: Script) -> None:
    gettoken.then(token_answer("T-short", expires_in=60)).default = token_answer("T-long")  # 60 s: inside the margin
    for n in range(3):
        await post_message(wecom, recorded("text.xml", MsgId=f"80{n}", Content=f"m{n}"))
        await wecom.api.wait_for(SEND, count=n + 1)
    assert [c.query["access_token"] for c in wecom.api.calls(SEND)] == ["T-short", "T-long", "T-long"]
    assert len(wecom.api.calls(GETTOKEN)) == 2


async def test_a_rejected_token_is_dropped_and_the_send_retried_with_a_new_one(
    wecom: PlatformLoop, gettoken: Script, message_send: Script, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    gettoken.then(token_answer(ACCESS_TOKEN)).default = token_answer("T-fresh")
    message_send.then({"errcode": 42001, "errmsg": "access_token expired"})
    await post_message(wecom, recorded("text.xml"))
    await wecom.api.wait_for(SEND, count=2)
    assert [c.query["access_token"] for c in wecom.api.calls(SEND)] == [ACCESS_TOKEN, "T-fresh"]
    await until(lambda: sample(wecom.registry, "bot_delivery_attempts_total", platform="wecom",
                               outcome="delivered") == 1)
    assert_nothing_leaks(SECRETS, caplog, wecom.metrics_text())


async def test_busy_is_retried_and_a_refusal_goes_to_the_dead_letters(
    wecom: PlatformLoop, message_send: Script
) -> None:
    message_send.then({"errcode": -1, "errmsg": "system busy"})
    await post_message(wecom, recorded("text.xml", MsgId="1"))
    await wecom.api.wait_for(SEND, count=2)
    await until(lambda: sample(wecom.registry, "bot_delivery_attempts_total", platform="wecom",
                               outcome="delivered") == 1)
    message_send.then({"errcode": 60020, "errmsg": "not allow to access from your ip"})
    await post_message(wecom, recorded("text.xml", MsgId="2"))
    await until(lambda: sample(wecom.registry, "bot_dead_letters_total", platform="wecom") == 1)
    assert len(wecom.api.calls(SEND)) == 3


def _truncated() -> tuple[dict[str, str], bytes]:
    encrypt, _ = encrypted(recorded("text.xml"))
    short = base64.b64encode(base64.b64decode(encrypt)[:-7]).decode()
    return signed(short), envelope(short)


def _bad_padding() -> tuple[dict[str, str], bytes]:
    # Whole blocks whose last byte claims a pad of 0: a valid signature over invalid content.
    from tests.bot.platforms.wecom.test_crypto import layout, raw_encrypt

    body = layout(recorded("text.xml").encode())
    value = raw_encrypt(body + b"\x00" * ((-len(body)) % 32 or 32))
    return signed(value), envelope(value)


def _wrong_corp() -> tuple[dict[str, str], bytes]:
    encrypt, query = encrypted(recorded("text.xml"), corp_id="wwAnotherCorp000")
    return query, envelope(encrypt)


def _stale() -> tuple[dict[str, str], bytes]:
    encrypt, query = encrypted(recorded("text.xml"), timestamp=int(time.time()) - 400)
    return query, envelope(encrypt)


def _official_sample_replayed() -> tuple[dict[str, str], bytes]:
    sample_ = OFFICIAL["message"]
    query = {k: sample_[k] for k in ("msg_signature", "timestamp", "nonce")}
    return query, sample_["body"].encode()


def _bad_signature() -> tuple[dict[str, str], bytes]:
    encrypt, query = encrypted(recorded("text.xml"))
    return {**query, "msg_signature": "0" * 40}, envelope(encrypt)


def _inner_xml_broken() -> tuple[dict[str, str], bytes]:
    encrypt, query = encrypted("<xml><MsgType>text</MsgType><Content>unclosed")
    return query, envelope(encrypt)


def _inner_entity_bomb() -> tuple[dict[str, str], bytes]:
    encrypt, query = encrypted((DATA / "billion_laughs.xml").read_text())
    return query, envelope(encrypt)


def _outer(name_or_body: str) -> tuple[dict[str, str], bytes]:
    body = (DATA / name_or_body).read_bytes() if name_or_body.endswith(".xml") else name_or_body.encode()
    return signed("whatever"), body


@pytest.mark.parametrize(
    ("build", "status", "reason", "says"),
    [
        (_bad_signature, 401, "bad_signature", "msg_signature"),
        (_stale, 401, "stale_timestamp", "timestamp"),
        (_official_sample_replayed, 401, "stale_timestamp", "timestamp"),
        (_wrong_corp, 400, "decrypt_failed", "corp id"),
        (_truncated, 400, "decrypt_failed", "truncated"),
        (_bad_padding, 400, "decrypt_failed", "padding"),
        (lambda: _outer("<xml><Encrypt>unclosed"), 400, "malformed", "well-formed"),
        (lambda: _outer("<xml><ToUserName>x</ToUserName></xml>"), 400, "malformed", "Encrypt"),
        (lambda: _outer("xxe.xml"), 400, "malformed", "DTD"),
        (lambda: _outer("billion_laughs.xml"), 400, "malformed", "DTD"),
        (_inner_xml_broken, 400, "malformed", "well-formed"),
        (_inner_entity_bomb, 400, "malformed", "DTD"),
    ],
    ids=["bad-signature", "stale", "official-sample-replayed", "wrong-corp-id", "truncated", "bad-padding",
         "malformed-xml", "no-encrypt", "xxe", "billion-laughs", "inner-malformed", "inner-entity-bomb"],
)
async def test_bad_callbacks_are_refused_with_a_reason_and_nothing_leaks(
    wecom: PlatformLoop, caplog: pytest.LogCaptureFixture, build: object, status: int, reason: str, says: str
) -> None:
    capture_everything(caplog)
    query, body = build()  # type: ignore[operator]
    resp = await wecom.client.post(callback_url(query), data=body)
    payload = await assert_rejected(wecom, resp, status, reason)
    assert says in payload["error"]["message"]
    assert_nothing_leaks(SECRETS, caplog, await resp.text())
    assert wecom.api.requests == []


async def test_a_verification_request_with_a_bad_signature_is_refused(wecom: PlatformLoop) -> None:
    echostr, query = encrypted("123")
    resp = await wecom.client.get(callback_url({**query, "echostr": echostr, "msg_signature": "f" * 40}))
    await assert_rejected(wecom, resp, 401, "bad_signature")


async def test_an_oversized_body_is_refused_before_any_parsing(wecom: PlatformLoop) -> None:
    encrypt, query = encrypted(recorded("text.xml"))
    resp = await wecom.client.post(callback_url(query), data=io.BytesIO(envelope(encrypt) + b" " * (1024 * 1024)))
    await assert_rejected(wecom, resp, 413, "too_large")
