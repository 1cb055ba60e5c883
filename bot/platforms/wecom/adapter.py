"""WeCom callbacks: echostr URL verification, encrypted XML messages, an empty ACK and active replies."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from bot.errors import WebhookRejected
from bot.messages import InboundMessage, Reply
from bot.platforms.base import Decoded, PlatformDeps, Route, WebhookRequest, WebhookResponse
from bot.platforms.checks import require_fresh, secrets_match
from bot.platforms.wecom.api import WeComAPI
from bot.platforms.wecom.crypto import DecryptError, aes_key, decrypt, msg_signature
from bot.platforms.wecom.settings import WeComSettings

PATH = "/wecom/callback"
# The slow path: an empty 200 tells WeCom "received"; the answer follows through message/send.
EMPTY_ACK = WebhookResponse(body=b"", content_type="text/plain")


class WeComAdapter:
    name = "wecom"
    routes = (Route("GET", PATH), Route("POST", PATH))

    def __init__(self, settings: WeComSettings, deps: PlatformDeps) -> None:
        self.settings = settings
        self.deps = deps
        self._token = settings.token.get_secret_value()
        self._key = aes_key(settings.encoding_aes_key.get_secret_value())
        self.api = WeComAPI(deps.http, settings.api_base, settings.corp_id, settings.secret.get_secret_value())

    def verify(self, request: WebhookRequest) -> None:
        params = query_params(request.query_string)
        require_fresh(params.get("timestamp"), self.deps.clock(), self.deps.max_skew_seconds)
        self._signed_value(request, params)

    def decode(self, request: WebhookRequest) -> Decoded:
        plain = self._decrypt(self._signed_value(request, query_params(request.query_string)))
        if request.method == "GET":
            # WeCom compares the body byte for byte: no quotes, BOM or newline.
            return Decoded("challenge", response=WebhookResponse(body=plain, content_type="text/plain"))
        return self._message(plain, request.received_at)

    def ack(self, request: WebhookRequest, decoded: Decoded) -> WebhookResponse:
        return EMPTY_ACK

    def format(self, reply: Reply) -> dict[str, Any]:
        return {
            "touser": reply.inbound.reply_handle["touser"],
            "msgtype": "text",
            "agentid": self.settings.agent_id,
            "text": {"content": reply.text},
            "safe": 0,
        }

    async def send(self, reply: Reply) -> None:
        # message/send has no idempotency key (its duplicate check compares content, which
        # would swallow two equal answers to two questions), so none is sent.
        await self.api.send_message(self.format(reply))

    def _signed_value(self, request: WebhookRequest, params: dict[str, str]) -> str:
        """The value msg_signature covers (echostr for GET, Encrypt for POST), once it matches."""
        if request.method == "GET":
            echostr = params.get("echostr", "")
            # A '+' sent unencoded reaches us as a space when a proxy or framework decoded the query.
            candidates = [echostr, echostr.replace(" ", "+")] if " " in echostr else [echostr]
        else:
            candidates = [_encrypt_element(request.body)]
        signature = params.get("msg_signature", "")
        timestamp, nonce = params.get("timestamp", ""), params.get("nonce", "")
        for value in candidates:
            if value and secrets_match(signature, msg_signature(self._token, timestamp, nonce, value)):
                return value
        raise WebhookRejected("bad_signature", "msg_signature does not match", status=401)

    def _decrypt(self, value: str) -> bytes:
        try:
            plain, receiveid = decrypt(self._key, value)
        except DecryptError as exc:
            raise WebhookRejected("decrypt_failed", f"cannot decrypt: {exc}") from None
        if receiveid != self.settings.corp_id:
            raise WebhookRejected(
                "decrypt_failed", "wrong corp id: the message's receiveid is not WECOM_CORP_ID"
            )
        return plain

    def _message(self, plain: bytes, received_at: float) -> Decoded:
        fields = {child.tag: child.text or "" for child in parse_xml(plain)}
        if fields.get("MsgType") != "text":
            return Decoded("ignore")  # events, images, voice...: acknowledged, not answered
        user, text = fields.get("FromUserName"), fields.get("Content")
        if not user or text is None:
            raise WebhookRejected("malformed", "text message without FromUserName or Content")
        message = InboundMessage(
            platform=self.name, message_id=_dedup_id(fields), chat_id=user, user_id=user, text=text,
            received_at=received_at, reply_handle={"touser": user},
        )
        return Decoded("message", messages=[message])


def query_params(raw: str) -> dict[str, str]:
    """Parse a query string keeping '+' as '+' (parse_qsl would make it a space and break base64)."""
    params: dict[str, str] = {}
    for part in raw.split("&"):
        name, _, value = part.partition("=")
        params.setdefault(unquote(name), unquote(value))
    return params


def parse_xml(data: bytes) -> Element:
    """Parse untrusted XML; a DTD (the door to XXE and entity bombs) is refused outright."""
    try:
        root: Element = fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise WebhookRejected("malformed", "XML with a DTD or entity declarations is refused") from None
    except ParseError:
        raise WebhookRejected("malformed", "body is not well-formed XML") from None
    return root


def _encrypt_element(body: bytes) -> str:
    encrypt = parse_xml(body).findtext("Encrypt")
    if not encrypt:
        raise WebhookRejected("malformed", "callback XML has no Encrypt element")
    return encrypt


def _dedup_id(fields: dict[str, str]) -> str:
    # WeCom re-sends an unacknowledged callback with the same MsgId; events carry none.
    if fields.get("MsgId"):
        return fields["MsgId"]
    if fields.get("CreateTime"):
        return f"{fields['FromUserName']}:{fields['CreateTime']}"
    raise WebhookRejected("malformed", "message without MsgId or CreateTime")
