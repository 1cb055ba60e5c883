"""The chat API: replies, multi-turn sessions, authentication and every bad input as JSON 4xx."""

from __future__ import annotations

import io

import pytest

from tests.bot.conftest import MakeClient, sample


async def test_hello_gets_a_reply_with_session_and_request_ids(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post("/api/v1/chat", json={"message": "hello"})
    assert resp.status == 200
    body = await resp.json()
    assert "hello" in body["reply"]
    assert "built-in responder" in body["reply"]
    assert body["session_id"] and body["request_id"]
    assert resp.headers["X-Request-ID"] == body["request_id"]


async def test_a_session_remembers_earlier_turns(make_client: MakeClient) -> None:
    client = await make_client()
    first = await (await client.post("/api/v1/chat", json={"message": "one"})).json()
    second = await (
        await client.post("/api/v1/chat", json={"message": "two", "session_id": first["session_id"]})
    ).json()
    assert "turn 1" in first["reply"]
    assert "turn 2" in second["reply"]
    assert second["session_id"] == first["session_id"]


async def test_user_id_alone_continues_that_users_conversation(make_client: MakeClient) -> None:
    client = await make_client()
    await client.post("/api/v1/chat", json={"message": "one", "user_id": "u-1"})
    body = await (await client.post("/api/v1/chat", json={"message": "two", "user_id": "u-1"})).json()
    assert "turn 2" in body["reply"]
    other = await (await client.post("/api/v1/chat", json={"message": "x", "user_id": "u-2"})).json()
    assert "turn 1" in other["reply"]


async def test_incoming_request_id_is_kept(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post("/api/v1/chat", json={"message": "hi"}, headers={"X-Request-ID": "abc-123"})
    assert (await resp.json())["request_id"] == "abc-123"


@pytest.mark.parametrize(
    ("data", "headers", "status", "code"),
    [
        (b"not json", {"Content-Type": "application/json"}, 400, "invalid_payload"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, "invalid_payload"),
        (b'{"message": 5}', {"Content-Type": "application/json"}, 400, "invalid_payload"),
        (b'{"message": "   "}', {"Content-Type": "application/json"}, 400, "invalid_payload"),
        (b'{}', {"Content-Type": "application/json"}, 400, "invalid_payload"),
        (b'{"message": "hi", "session_id": 7}', {"Content-Type": "application/json"}, 400, "invalid_payload"),
        (b'{"message": "hi", "session_id": "a b"}', {"Content-Type": "application/json"}, 400, "invalid_payload"),
        (b'{"message": "hi"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"message": "hi"}', {}, 415, "unsupported_media_type"),
        (b'{"message": "\xff\xfe"}', {"Content-Type": "application/json"}, 400, "invalid_payload"),
        (b"[" * 5000 + b"]" * 5000, {"Content-Type": "application/json"}, 400, "invalid_payload"),
    ],
)
async def test_bad_input_is_a_json_4xx(
    make_client: MakeClient, data: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    client = await make_client()
    resp = await client.post("/api/v1/chat", data=data, headers=headers)
    assert resp.status == status
    body = await resp.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_message_over_the_limit_is_refused(make_client: MakeClient) -> None:
    client = await make_client({"BOT_MAX_MESSAGE_CHARS": "10"})
    resp = await client.post("/api/v1/chat", json={"message": "x" * 11})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "message_too_long"
    ok = await client.post("/api/v1/chat", json={"message": "x" * 10})
    assert ok.status == 200


async def test_body_over_the_size_limit_is_413(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post(
        "/api/v1/chat", data=io.BytesIO(b'{"message": "' + b"x" * (1024 * 1024 + 10) + b'"}'),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_wrong_method_are_json(make_client: MakeClient) -> None:
    client = await make_client()
    missing = await client.get("/nope")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    wrong = await client.get("/api/v1/chat")
    assert wrong.status == 405
    assert "POST" in wrong.headers["Allow"]
    assert (await wrong.json())["error"]["code"] == "method_not_allowed"


async def test_api_key_is_required_when_configured_and_any_listed_key_works(make_client: MakeClient) -> None:
    client = await make_client({"BOT_API_KEY": "old-key, new-key"})
    none = await client.post("/api/v1/chat", json={"message": "hi"})
    assert none.status == 401
    assert (await none.json())["error"]["code"] == "unauthorized"
    wrong = await client.post("/api/v1/chat", json={"message": "hi"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert "nope" not in await wrong.text()
    for key in ("old-key", "new-key"):
        ok = await client.post("/api/v1/chat", json={"message": "hi"}, headers={"Authorization": f"Bearer {key}"})
        assert ok.status == 200
    health = await client.get("/health")
    assert health.status == 200


async def test_the_x_api_key_header_the_sidecar_limits_on_is_accepted_like_a_bearer_token(
    make_client: MakeClient,
) -> None:
    client = await make_client({"BOT_API_KEY": "k-1"})
    first = await client.post("/api/v1/chat", json={"message": "one", "user_id": "u"}, headers={"X-API-Key": "k-1"})
    assert first.status == 200
    second = await client.post(
        "/api/v1/chat", json={"message": "two", "user_id": "u"}, headers={"Authorization": "Bearer k-1"}
    )
    assert "turn 2" in (await second.json())["reply"]
    wrong = await client.post("/api/v1/chat", json={"message": "x"}, headers={"X-API-Key": "k-2"})
    assert wrong.status == 401 and "k-2" not in await wrong.text()


async def test_errors_are_counted_by_code(make_client: MakeClient, registry) -> None:  # type: ignore[no-untyped-def]
    client = await make_client()
    await client.post("/api/v1/chat", data=b"x", headers={"Content-Type": "application/json"})
    assert sample(registry, "bot_errors_total", code="invalid_payload") == 1
    assert sample(
        registry, "bot_requests_total", platform="api", route="/api/v1/chat", method="POST", status="400"
    ) == 1


async def chat_as(client, body: dict, key: str | None = None) -> dict:  # type: ignore[no-untyped-def,type-arg]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = await client.post("/api/v1/chat", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def test_a_session_id_equal_to_a_user_id_does_not_reach_that_users_conversation(make_client: MakeClient) -> None:
    client = await make_client()
    await chat_as(client, {"message": "secret plan", "user_id": "alice"})
    await chat_as(client, {"message": "more", "user_id": "alice"})
    intruder = await chat_as(client, {"message": "what did she say?", "session_id": "alice"})
    assert "turn 1" in intruder["reply"]
    alice = await chat_as(client, {"message": "again", "user_id": "alice"})
    assert "turn 3" in alice["reply"]
    # The handle the server hands alice continues her conversation, and is not her user id.
    assert alice["session_id"] != "alice"
    assert "turn 4" in (await chat_as(client, {"message": "4", "session_id": alice["session_id"]}))["reply"]


async def test_server_minted_session_ids_are_unguessable(make_client: MakeClient) -> None:
    client = await make_client()
    minted = [(await chat_as(client, {"message": "hi"}))["session_id"] for _ in range(20)]
    assert len(set(minted)) == 20
    # At least 128 bits from a CSPRNG, in the alphabet callers may use for ids.
    assert all(len(sid) >= 22 and sid.replace("-", "").replace("_", "").isalnum() for sid in minted)


async def test_caller_supplied_ids_are_scoped_to_the_api_key(make_client: MakeClient) -> None:
    client = await make_client({"BOT_API_KEY": "key-of-acme,key-of-globex"})
    await chat_as(client, {"message": "acme 1", "user_id": "u1"}, "key-of-acme")
    await chat_as(client, {"message": "acme 2", "session_id": "shared-name"}, "key-of-acme")
    globex_user = await chat_as(client, {"message": "g", "user_id": "u1"}, "key-of-globex")
    globex_session = await chat_as(client, {"message": "g", "session_id": "shared-name"}, "key-of-globex")
    assert "turn 1" in globex_user["reply"] and "turn 1" in globex_session["reply"]
    acme_user = await chat_as(client, {"message": "acme 3", "user_id": "u1"}, "key-of-acme")
    assert "turn 2" in acme_user["reply"]
    # Even the handle acme was given leads nowhere under another key.
    stolen = await chat_as(client, {"message": "g", "session_id": acme_user["session_id"]}, "key-of-globex")
    assert "turn 1" in stolen["reply"]
