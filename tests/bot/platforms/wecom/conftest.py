"""WeCom fixtures: the bot with WECOM_* set, a fake qyapi, and genuine callbacks made by wechatpy."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from defusedxml.ElementTree import fromstring
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import WeChatCrypto

from tests.bot.platforms.harness import PlatformLoop, Script, StartPlatform, api, start_platform  # noqa: F401  (fixtures)
from tests.support.fake_platform import FakePlatformAPI

DATA = Path(__file__).parent.parent / "data" / "wecom"
OFFICIAL = json.loads((DATA / "official_samples.json").read_text())
TOKEN = OFFICIAL["token"]
CORP_ID = OFFICIAL["corp_id"]
AES_KEY = OFFICIAL["encoding_aes_key"]
SECRET = "wecom-app-secret-must-not-leak"
ACCESS_TOKEN = "access-token-must-not-leak"
AGENT_ID = "1000002"
SECRETS = (TOKEN, AES_KEY, SECRET, ACCESS_TOKEN)


def recorded(name: str, **replace: str) -> str:
    """A recorded plaintext message, with element texts swapped (e.g. MsgId) to make distinct events."""
    text = (DATA / name).read_text().rstrip("\n")
    for tag, value in replace.items():
        start, end = text.index(f"<{tag}>") + len(tag) + 2, text.index(f"</{tag}>")
        text = text[:start] + value + text[end:]
    return text


def encrypted(plaintext: str, *, corp_id: str = CORP_ID, timestamp: int | None = None, nonce: str = "1372623149"
              ) -> tuple[str, dict[str, str]]:
    """wechatpy's encryption of `plaintext`: (Encrypt value, the query WeCom would sign it with)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    reply = fromstring(WeChatCrypto(TOKEN, AES_KEY, corp_id).encrypt_message(plaintext, nonce, stamp))
    query = {"msg_signature": reply.findtext("MsgSignature"), "timestamp": stamp, "nonce": nonce}
    return reply.findtext("Encrypt"), query


def signed(encrypt: str, timestamp: int | None = None, nonce: str = "1372623149") -> dict[str, str]:
    """The query for an arbitrary Encrypt value, signed by wechatpy's signer."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"msg_signature": _get_signature(TOKEN, stamp, nonce, encrypt), "timestamp": stamp, "nonce": nonce}


def envelope(encrypt: str) -> bytes:
    """The POST body WeCom sends around an Encrypt value."""
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><AgentID><![CDATA[{AGENT_ID}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").encode()


def callback_url(query: dict[str, str]) -> str:
    return "/wecom/callback?" + urlencode(query)


def env(base: str) -> dict[str, str]:
    """The WECOM_* settings with the API at `base`."""
    return {"WECOM_CORP_ID": CORP_ID, "WECOM_AGENT_ID": AGENT_ID, "WECOM_SECRET": SECRET, "WECOM_TOKEN": TOKEN,
            "WECOM_ENCODING_AES_KEY": AES_KEY, "WECOM_API_BASE": base}


@pytest.fixture
def gettoken(api: FakePlatformAPI) -> Script:
    return Script(api, "GET", "/cgi-bin/gettoken", token_answer(ACCESS_TOKEN))


@pytest.fixture
def message_send(api: FakePlatformAPI) -> Script:
    return Script(api, "POST", "/cgi-bin/message/send", {"errcode": 0, "errmsg": "ok", "invaliduser": ""})


def token_answer(token: str, expires_in: int = 7200) -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in}


@pytest.fixture
async def wecom(start_platform: StartPlatform, api: FakePlatformAPI, gettoken: Script, message_send: Script) -> PlatformLoop:
    return await start_platform("wecom", env, api)
