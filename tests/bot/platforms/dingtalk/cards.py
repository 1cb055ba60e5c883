"""A stand-in for DingTalk's interactive card OpenAPI (card_1.0): createAndDeliver and card streaming.

It checks what DingTalk checks before it takes a card (the access token header, the fields the
API names as required, the open space id and its deliver model) and keeps every card's state, so
a test reads what the user would see: the text of its content variable, and whether its stream
was finalized. Shapes: dingtalk_stream 0.24.3 (card_replier.py) and the card_1.0 request models
of DingTalk's generated SDK (StreamingUpdateRequest: content, guid, key, outTrackId required).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.fake_platform import FakePlatformAPI

# The routes as dingtalk_stream's CardReplier calls them (POST and PUT respectively).
CREATE_AND_DELIVER_PATH = "/v1.0/card/instances/createAndDeliver"
STREAMING_PATH = "/v1.0/card/streaming"
TOKEN_HEADER = "x-acs-dingtalk-access-token"
_SPACE = re.compile(r"dtv1\.card//(IM_GROUP|IM_ROBOT)\.(.+)")


@dataclass
class Card:
    """One card instance as DingTalk holds it."""

    out_track_id: str
    template_id: str
    space_type: str
    space_id: str
    params: dict[str, str]
    writes: list[dict[str, Any]] = field(default_factory=list)  # accepted streaming bodies, in order
    finalized: bool = False


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class DingTalkCards:
    """The card routes of one app, answering only requests that carry `access_token`."""

    access_token: str
    cards: dict[str, Card] = field(default_factory=dict)
    creates: list[dict[str, Any]] = field(default_factory=list)  # every accepted createAndDeliver body
    refusals: list[tuple[str, str]] = field(default_factory=list)  # (path, code) of every refused call
    # Scripted answers served before the protocol's own, one per call: (status, JSON body).
    scripted: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def serve(self, api: FakePlatformAPI) -> None:
        """Answer the card routes on a FakePlatformAPI."""
        api.on("POST", CREATE_AND_DELIVER_PATH, lambda req: self._answer(req.path, req.headers, req.body))
        api.on("PUT", STREAMING_PATH, lambda req: self._answer(req.path, req.headers, req.body))

    def add_routes(self, app: web.Application) -> None:
        """Answer the card routes on a plain aiohttp application (the Stream gateway)."""

        async def handle(request: web.Request) -> web.Response:
            return self._answer(request.path, dict(request.headers), await request.read())

        app.router.add_post(CREATE_AND_DELIVER_PATH, handle)
        app.router.add_put(STREAMING_PATH, handle)

    def only(self) -> Card:
        assert len(self.cards) == 1, f"{len(self.cards)} cards: {list(self.cards)}"
        return next(iter(self.cards.values()))

    def text_of(self, card: Card, key: str = "content") -> str:
        return card.params.get(key, "")

    # -- the protocol --

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> web.Response:
        if self.scripted:
            status, payload = self.scripted.pop(0)
            return web.json_response(payload, status=status)
        try:
            token = {k.lower(): v for k, v in headers.items()}.get(TOKEN_HEADER)
            if token != self.access_token:
                raise Refused(401, "InvalidAuthentication", "access token is missing or invalid")
            try:
                body = json.loads(raw)
            except ValueError:
                raise Refused(400, "param.empty", "body is not JSON") from None
            if not isinstance(body, dict) or not body:
                raise Refused(400, "param.empty", "param.empty")
            result = self._create(body) if path == CREATE_AND_DELIVER_PATH else self._stream(body)
        except Refused as refused:
            self.refusals.append((path, refused.code))
            return web.json_response({"code": refused.code, "message": refused.message,
                                      "requestid": "stand-in"}, status=refused.status)
        return web.json_response(result)

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        template, out_track_id = body.get("cardTemplateId"), body.get("outTrackId")
        if not isinstance(template, str) or not template:
            raise Refused(400, "param.cardTemplateIdEmpty", "param.cardTemplateIdEmpty")
        if not isinstance(out_track_id, str) or not out_track_id:
            raise Refused(400, "param.outTrackIdEmpty", "param.outTrackIdEmpty")
        data = body.get("cardData")
        params = data.get("cardParamMap") if isinstance(data, dict) else None
        # cardParamMap is a Map<String, String>: every value a string.
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise Refused(400, "param.cardPublicDataEmpty", "cardData.cardParamMap must map names to strings")
        match = _SPACE.fullmatch(str(body.get("openSpaceId", "")))
        if match is None:
            raise Refused(400, "param.openSpaceModelInvalid", "openSpaceId is not dtv1.card//IM_GROUP|IM_ROBOT.<id>")
        space_type, space_id = match.groups()
        if space_type == "IM_GROUP":
            deliver = body.get("imGroupOpenDeliverModel")
            if not isinstance(body.get("imGroupOpenSpaceModel"), dict) or not isinstance(deliver, dict) \
                    or not deliver.get("robotCode"):
                raise Refused(400, "param.openSpaceModelInvalid", "a group card needs imGroupOpenSpaceModel and "
                                                                  "imGroupOpenDeliverModel.robotCode")
        else:
            deliver = body.get("imRobotOpenDeliverModel")
            if not isinstance(body.get("imRobotOpenSpaceModel"), dict) or not isinstance(deliver, dict) \
                    or deliver.get("spaceType") != "IM_ROBOT":
                raise Refused(400, "param.openSpaceModelInvalid", "a one-to-one card needs imRobotOpenSpaceModel "
                                                                  "and imRobotOpenDeliverModel.spaceType IM_ROBOT")
        self.creates.append(body)
        self.cards[out_track_id] = Card(out_track_id, template, space_type, space_id, dict(params))
        return {"success": True, "result": {"outTrackId": out_track_id, "deliverResults": [
            {"spaceType": space_type, "spaceId": space_id, "success": True}]}}

    def _stream(self, body: dict[str, Any]) -> dict[str, Any]:
        for name in ("outTrackId", "guid", "key"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise Refused(400, "param.invalid", f"{name} is required")
        if not isinstance(body.get("content"), str):
            raise Refused(400, "param.invalid", "content is required")
        for flag in ("isFull", "isFinalize", "isError"):
            if flag in body and not isinstance(body[flag], bool):
                raise Refused(400, "param.invalid", f"{flag} must be a boolean")
        card = self.cards.get(body["outTrackId"])
        if card is None:
            raise Refused(400, "param.invalid", "no card with this outTrackId")
        key, content = body["key"], body["content"]
        card.params[key] = content if body.get("isFull") else card.params.get(key, "") + content
        card.finalized = card.finalized or bool(body.get("isFinalize"))
        card.writes.append(body)
        return {"success": True, "result": True}

