"""`python -m monitoring.setup_elk`: install botwatch's ILM policy, index template and Kibana objects (idempotent)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from elastic_transport import ApiError, TransportError

from elasticsearch import AsyncElasticsearch
from monitoring.slo import ROOT

ELASTICSEARCH_DIR = ROOT / "elasticsearch"
KIBANA_DIR = ROOT / "kibana"
NAME = "botwatch-logs"  # the ILM policy and the index template
T = TypeVar("T")


class SetupError(Exception):
    """A step failed; the message says which and why, without credentials."""


@dataclass(frozen=True)
class Payloads:
    """What gets installed, read from the committed files."""

    ilm_policy: dict[str, Any]
    index_template: dict[str, Any]
    saved_objects: bytes

    @classmethod
    def load(cls, es_dir: Path = ELASTICSEARCH_DIR, kibana_dir: Path = KIBANA_DIR) -> Payloads:
        return cls(
            ilm_policy=json.loads((es_dir / "ilm-policy.json").read_text(encoding="utf-8"))["policy"],
            index_template=json.loads((es_dir / "index-template.json").read_text(encoding="utf-8")),
            saved_objects=(kibana_dir / "saved-objects.ndjson").read_bytes(),
        )


async def _retry(what: str, attempt: Callable[[], Awaitable[T]], deadline: float) -> T:
    """Run `attempt` until it succeeds or the deadline passes; services in compose start slowly."""
    delay = 0.5
    while True:
        try:
            return await attempt()
        except (TransportError, aiohttp.ClientError, asyncio.TimeoutError, SetupError) as exc:
            if time.monotonic() + delay > deadline:
                raise SetupError(f"{what}: {_reason(exc)}") from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def _shown(url: str) -> str:
    """The URL without any user:password in it, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


async def install_elasticsearch(es: AsyncElasticsearch, url: str, payloads: Payloads, deadline: float) -> None:
    await _retry(f"Elasticsearch at {_shown(url)} is not answering", lambda: es.cluster.health(wait_for_status="yellow", timeout="5s"), deadline)
    try:
        await es.ilm.put_lifecycle(name=NAME, policy=payloads.ilm_policy)
        await es.indices.put_index_template(name=NAME, **payloads.index_template)
    except ApiError as exc:
        raise SetupError(f"Elasticsearch refused the {NAME} policy or template: {_reason(exc)}") from None


async def install_kibana(
    session: aiohttp.ClientSession, kibana_url: str, payloads: Payloads, deadline: float
) -> int:
    """Import the saved objects, overwriting earlier copies; returns how many were imported."""
    base = kibana_url.rstrip("/")

    async def available() -> None:
        async with session.get(f"{base}/api/status") as resp:
            if resp.status != 200:
                raise SetupError(f"status HTTP {resp.status}")

    await _retry(f"Kibana at {_shown(base)} is not answering", available, deadline)
    form = aiohttp.FormData()
    form.add_field("file", payloads.saved_objects, filename="saved-objects.ndjson", content_type="application/ndjson")
    async with session.post(
        f"{base}/api/saved_objects/_import", params={"overwrite": "true"}, data=form, headers={"kbn-xsrf": "true"}
    ) as resp:
        body = await resp.json(content_type=None)
    if resp.status != 200 or not body.get("success"):
        errors = body.get("errors") or body.get("message") or body
        raise SetupError(f"Kibana refused the saved objects (HTTP {resp.status}): {str(errors)[:500]}")
    return int(body.get("successCount", 0))


async def setup_elk(
    elasticsearch_url: str, kibana_url: str, *, username: str | None, password: str | None, timeout: float
) -> int:
    payloads = Payloads.load()
    deadline = time.monotonic() + timeout
    auth = (username, password) if username and password else None
    es = AsyncElasticsearch(elasticsearch_url, basic_auth=auth, request_timeout=10, max_retries=0)
    try:
        await install_elasticsearch(es, elasticsearch_url, payloads, deadline)
    finally:
        await es.close()
    basic = aiohttp.BasicAuth(username, password) if username and password else None
    async with aiohttp.ClientSession(auth=basic, timeout=aiohttp.ClientTimeout(total=30)) as session:
        return await install_kibana(session, kibana_url, payloads, deadline)


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--elasticsearch", default=environ.get("ELASTICSEARCH_URL", "http://localhost:9200"))
    parser.add_argument("--kibana", default=environ.get("KIBANA_URL", "http://localhost:5601"))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for both to answer")
    args = parser.parse_args(argv)
    try:
        count = asyncio.run(
            setup_elk(
                args.elasticsearch, args.kibana, username=environ.get("ELASTIC_USERNAME"),
                password=environ.get("ELASTIC_PASSWORD"), timeout=args.timeout,
            )
        )
    except SetupError as exc:
        print(f"setup-elk: {exc}", file=sys.stderr)
        return 1
    print(f"setup-elk: ILM policy and index template {NAME} installed; {count} Kibana objects imported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
