"""One bearer check for the chat API and the alert receiver: scheme required, every secret compared, never a 500."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from bot.errors import Unauthorized
from bot.http.auth import require_bearer

SECRETS = ("old-key-1", "new-key-2")


def check(authorization: str | None) -> str | None:
    headers = CIMultiDict({"Authorization": authorization} if authorization is not None else {})
    try:
        require_bearer(make_mocked_request("POST", "/", headers=headers), SECRETS)
    except Unauthorized as exc:
        return exc.message
    return None


@pytest.mark.parametrize("value", ["Bearer old-key-1", "Bearer new-key-2", "bearer new-key-2", "Bearer  old-key-1 "])
def test_any_configured_secret_is_accepted(value: str) -> None:
    assert check(value) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Bearer ", "missing bearer token"),
        ("old-key-1", "missing bearer token"),  # the bare secret, without its scheme
        ("Basic old-key-1", "missing bearer token"),
        ("Bearer old-key-", "invalid bearer token"),
        ("Bearer old-key-1x", "invalid bearer token"),
        ("Bearer clé", "invalid bearer token"),  # non-ASCII: compared as bytes, not refused with a 500
    ],
)
def test_anything_else_is_refused_with_a_reason(value: str | None, reason: str) -> None:
    assert check(value) == reason
