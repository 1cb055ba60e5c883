"""The canary split: the configured share of users, always the same users, chosen by a stable hash."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import aiohttp
import pytest

from sidecar.canary import CanarySplit, user_from_chat_body, user_key
from tests.sidecar.conftest import Running, metric


@pytest.mark.parametrize("percent", [1.0, 10.0, 25.0, 50.0])
def test_share_of_ten_thousand_users_is_within_two_points(percent: float) -> None:
    split = CanarySplit(percent)
    share = sum(split.is_canary(f"user-{i}".encode()) for i in range(10_000)) / 100
    assert abs(share - percent) <= 2


def test_the_bucket_is_a_keyed_hash_independent_of_the_process() -> None:
    # Python's hash() changes with PYTHONHASHSEED; the split must not, or users would hop between
    # releases. The bucket is BLAKE2b-64 of the user key modulo 10,000, as documented.
    for user in (b"u:alice", b"u:bob", b"ip:10.0.0.1"):
        expected = int.from_bytes(hashlib.blake2b(user, digest_size=8).digest(), "big") % 10_000
        assert CanarySplit(50).bucket(user) == expected


def test_raising_the_percentage_only_moves_users_to_the_canary() -> None:
    users = [f"u:{i}".encode() for i in range(5000)]
    at_10 = {u for u in users if CanarySplit(10).is_canary(u)}
    at_30 = {u for u in users if CanarySplit(30).is_canary(u)}
    assert at_10 < at_30


def test_zero_and_hundred_percent_are_exact() -> None:
    users = [f"u:{i}".encode() for i in range(2000)]
    assert not any(CanarySplit(0).is_canary(u) for u in users)
    assert all(CanarySplit(100).is_canary(u) for u in users)


def test_the_user_is_the_header_then_the_body_then_the_address() -> None:
    assert user_key(b"alice", b"bob", "10.0.0.1") == b"u:alice"
    assert user_key(None, b"bob", "10.0.0.1") == b"u:bob"
    assert user_key(None, None, "10.0.0.1") == b"ip:10.0.0.1"
    # The same user named in a header or in a chat body lands on the same side.
    assert user_key(b"carol", None, "a") == user_key(None, b"carol", "b")


@pytest.mark.parametrize(
    ("body", "user"),
    [
        (b'{"message": "hi", "user_id": "u-1"}', b"u-1"),
        (b'{"message": "hi"}', None),
        (b'{"user_id": 42}', None),
        (b'{"user_id": ""}', None),
        (b"[1, 2]", None),
        (b"not json", None),
        (b"", None),
    ],
)
def test_user_id_is_read_from_a_chat_body_only_when_it_is_a_string(body: bytes, user: bytes | None) -> None:
    assert user_from_chat_body(body) == user


# Through a real sidecar with two real upstreams that say who they are.

USERS = 10_000
PERCENT = 10.0


async def test_ten_thousand_users_split_within_two_points_and_each_stays_on_its_side(
    start_upstream: Callable[..., Running], start_sidecar: Callable[..., Running]
) -> None:
    stable, canary = start_upstream("stable"), start_upstream("canary")
    sidecar = start_sidecar(
        stable.url, {"SIDECAR_CANARY_UPSTREAM": canary.url, "SIDECAR_CANARY_PERCENT": str(PERCENT)}
    )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as client:
        gate = asyncio.Semaphore(32)

        async def side(user: str, *, in_body: bool = False) -> str:
            async with gate:
                if in_body:
                    request = client.post(sidecar.url + "/api/v1/chat", json={"message": "hi", "user_id": user})
                else:
                    request = client.get(sidecar.url + "/echo", headers={"X-User-ID": user})
                async with request as response:
                    assert response.status == 200
                    return str((await response.json())["upstream"])

        users = [f"user-{i}" for i in range(USERS)]
        first = await asyncio.gather(*(side(user) for user in users))
        share = 100 * first.count("canary") / USERS
        assert abs(share - PERCENT) <= 2, share
        canary_count = metric(sidecar.admin, "sidecar_requests_total", route="other", status="200", upstream="canary")
        assert canary_count == first.count("canary"), "every metric carries the upstream that answered"

        # Sticky: the same users again, half named in the chat body instead of the header.
        sample = users[:1000]
        again = await asyncio.gather(*(side(user, in_body=i % 2 == 0) for i, user in enumerate(sample)))
        assert again == first[:1000]

        # A dead canary hands its users back to stable instead of failing them.
        canary.process.kill()
        deadline = time.monotonic() + 5
        while metric(sidecar.admin, "sidecar_upstream_up", upstream="canary") != 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        canary_user = users[first.index("canary")]
        assert await side(canary_user) == "stable"
