"""WeCom callbacks built by wechatpy's WeChatCrypto, an implementation independent of the bot's."""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from wechatpy.enterprise.crypto import WeChatCrypto

from loadtest.platforms.base import SignedRequest, now_s, unique_id

SETTINGS = ("WECOM_CORP_ID", "WECOM_TOKEN", "WECOM_ENCODING_AES_KEY")


@dataclass(frozen=True)
class WeComCallbacks:
    corp_id: str
    agent_id: str
    crypto: WeChatCrypto

    name = "wecom"
    route = "/wecom/callback"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WeComCallbacks:
        corp_id = environ["WECOM_CORP_ID"]
        crypto = WeChatCrypto(environ["WECOM_TOKEN"], environ["WECOM_ENCODING_AES_KEY"], corp_id)
        return cls(corp_id, environ.get("WECOM_AGENT_ID", "1000002"), crypto)

    def message(self, text: str, user: str, chat: str) -> SignedRequest:
        timestamp, nonce = str(now_s()), unique_id()
        msg_id = str(int(unique_id()[:15], 16))
        plain = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{timestamp}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
            f"<MsgId>{msg_id}</MsgId><AgentID>{self.agent_id}</AgentID></xml>"
        )
        # wechatpy wraps the ciphertext in the passive-reply envelope; a callback carries the same
        # Encrypt value in a smaller envelope and the signature in the query string.
        envelope = ET.fromstring(self.crypto.encrypt_message(plain, nonce, timestamp))
        encrypted = envelope.findtext("Encrypt") or ""
        msg_signature = envelope.findtext("MsgSignature") or ""
        body = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.agent_id}]]></AgentID><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        )
        query = urllib.parse.urlencode({"msg_signature": msg_signature, "timestamp": timestamp, "nonce": nonce})
        return SignedRequest(self.route, body.encode(), {"Content-Type": "text/xml"}, query)
