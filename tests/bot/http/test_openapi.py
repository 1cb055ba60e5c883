"""`/openapi.json` tells the truth: schemathesis drives a real bot from it and finds no 5xx and no undocumented answer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bots import running_bot
from tests.support.raw_http import exchange

API_KEY = "openapi-test-key-123"


@pytest.fixture(scope="module")
def bot_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_bot(tmp_path_factory.mktemp("openapi-bot"), {"BOT_API_KEY": API_KEY}) as base:
        yield base


def test_every_documented_operation_answers_as_documented_and_never_5xx(bot_base: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", bot_base + "/openapi.json",
         "--checks", "all", "--header", f"Authorization: Bearer {API_KEY}",
         "--max-examples", "25", "--seed", "7", "--generation-database", "none",
         "--request-timeout", "10", "--workers", "2", "--no-color", "--output-sanitize", "false",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_the_document_is_openapi_3_1_and_states_this_bots_limits(bot_base: str) -> None:
    document = exchange(bot_base, "GET", "/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) >= {"/health", "/api/health", "/ready", "/api/v1/chat"}
    message = document["components"]["schemas"]["ChatRequest"]["properties"]["message"]
    assert message["maxLength"] == 4000
    assert document["paths"]["/api/v1/chat"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
