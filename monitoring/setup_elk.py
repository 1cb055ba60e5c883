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
from elastic_transport import TransportError

from elasticsearch import ApiError, AsyncElasticsearch
from monitoring.slo import ROOT

ELASTICSEARCH_DIR = ROOT / "elasticsearch"
KIBANA_DIR = ROOT / "kibana"
NAME = "botwatch-logs"  # the ILM policy and the index template
T = TypeVar("T")
Report = Callable[[str], None]


def say(line: str) -> None:
    """One progress line on stdout, flushed: compose shows it as the one-shot container runs."""
    print(f"setup-elk: {line}", flush=True)


class SetupError(Exception):
    """A step failed; the message says which and why, without credentials."""


class CredentialsRefused(SetupError):
    """401/403: waiting longer will not help, so it is reported at once."""


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


async def _retry(what: str, attempt: Callable[[], Awaitable[T]], deadline: float, report: Report = say) -> T:
    """Run `attempt` until it succeeds or the deadline passes; services in compose start slowly.

    Says once that it waits and how long it will, then every ~30 s that it still does."""
    delay, started, told = 0.5, time.monotonic(), 0.0
    while True:
        try:
            return await attempt()
        except CredentialsRefused:
            raise
        # ApiError: a cluster still forming answers 503, or 408 when it is not yellow within the health timeout.
        except (ApiError, TransportError, aiohttp.ClientError, asyncio.TimeoutError, SetupError) as exc:
            if isinstance(exc, ApiError) and exc.status_code in (401, 403):
                raise CredentialsRefused(f"{what.split(' is ')[0]} refused the credentials (HTTP {exc.status_code})") from None
            now = time.monotonic()
            waited = now - started
            if now + delay > deadline:
                bound = max(0.0, deadline - started)
                raise SetupError(f"{what} after {waited:.0f}s (--wait {bound:.0f}): {_reason(exc)}") from None
            if not told or waited - told >= 30:
                report(f"waiting: {what} yet ({_reason(exc)}); giving up in {deadline - now:.0f}s")
                told = waited or 0.001
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


async def install_elasticsearch(
    es: AsyncElasticsearch, url: str, payloads: Payloads, deadline: float, report: Report = say
) -> None:
    await _retry(
        f"Elasticsearch at {_shown(url)} is not answering",
        lambda: es.cluster.health(wait_for_status="yellow", timeout="5s"), deadline, report,
    )
    report(f"Elasticsearch at {_shown(url)} is up")
    steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        (f"ILM policy {NAME}", lambda: es.ilm.put_lifecycle(name=NAME, policy=payloads.ilm_policy)),
        (f"index template {NAME}", lambda: es.indices.put_index_template(name=NAME, **payloads.index_template)),
    ]
    for what, put in steps:
        try:
            await put()
        except ApiError as exc:
            raise SetupError(f"Elasticsearch refused the {what} (HTTP {exc.status_code}): {_api_reason(exc)}") from None
        except TransportError as exc:
            raise SetupError(f"Elasticsearch at {_shown(url)} failed while installing the {what}: {_reason(exc)}") from None
        report(f"{what} installed")


def _api_reason(exc: ApiError) -> str:
    """Elasticsearch's own explanation (error.reason), else the first line of the exception."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    if isinstance(error, dict) and error.get("reason"):
        return f"{error.get('type', 'error')}: {error['reason']}"[:300]
    return _reason(exc)


async def install_kibana(
    session: aiohttp.ClientSession, kibana_url: str, payloads: Payloads, deadline: float, report: Report = say
) -> int:
    """Import the saved objects, overwriting earlier copies; returns how many were imported."""
    base = kibana_url.rstrip("/")

    async def available() -> None:
        async with session.get(f"{base}/api/status") as resp:
            if resp.status in (401, 403):
                raise CredentialsRefused(f"Kibana at {_shown(base)} refused the credentials (HTTP {resp.status})")
            if resp.status != 200:
                raise SetupError(f"status HTTP {resp.status}")

    await _retry(f"Kibana at {_shown(base)} is not answering", available, deadline, report)
    report(f"Kibana at {_shown(base)} is up")
    form = aiohttp.FormData()
    form.add_field("file", payloads.saved_objects, filename="saved-objects.ndjson", content_type="application/ndjson")
    try:
        async with session.post(
            f"{base}/api/saved_objects/_import", params={"overwrite": "true"}, data=form, headers={"kbn-xsrf": "true"}
        ) as resp:
            status, text = resp.status, await resp.text()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise SetupError(f"Kibana at {_shown(base)} failed while importing the saved objects: {_reason(exc)}") from None
    try:
        body = json.loads(text)
    except ValueError:
        body = {"message": text.strip()[:300] or "empty response"}
    if status != 200 or not isinstance(body, dict) or not body.get("success"):
        raise SetupError(f"Kibana refused the saved objects (HTTP {status}): {_kibana_reason(body)}")
    count = int(body.get("successCount", 0))
    report(f"{count} Kibana saved objects imported")
    return count


def _kibana_reason(body: object) -> str:
    """`search botwatch-errors: missing_references; ...` from an import response, else its message."""
    if not isinstance(body, dict):
        return str(body)[:300]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        parts = [f"{e.get('type')} {e.get('id')}: {(e.get('error') or {}).get('type', 'error')}" for e in errors[:5]]
        return "; ".join(parts) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
    return str(body.get("message") or body)[:300]


async def setup_elk(
    elasticsearch_url: str, kibana_url: str, *, username: str | None, password: str | None, timeout: float,
    report: Report = say,
) -> int:
    """Install everything; `timeout` bounds the wait for both services to answer (not the installs)."""
    payloads = Payloads.load()
    deadline = time.monotonic() + timeout
    auth = (username, password) if username and password else None
    es = AsyncElasticsearch(elasticsearch_url, basic_auth=auth, request_timeout=10, max_retries=0)
    try:
        await install_elasticsearch(es, elasticsearch_url, payloads, deadline, report)
    finally:
        await es.close()
    headers = {"Authorization": aiohttp.encode_basic_auth(username, password)} if username and password else None
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as session:
        return await install_kibana(session, kibana_url, payloads, deadline, report)


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.setup_elk", description=__doc__,
        epilog="ELASTIC_USERNAME and ELASTIC_PASSWORD, when set, are sent to both services as basic auth.",
    )
    parser.add_argument("--elasticsearch", default=environ.get("ELASTICSEARCH_URL", "http://localhost:9200"),
                        metavar="URL", help="Elasticsearch URL (env ELASTICSEARCH_URL; default %(default)s)")
    parser.add_argument("--kibana", default=environ.get("KIBANA_URL", "http://localhost:5601"),
                        metavar="URL", help="Kibana URL (env KIBANA_URL; default %(default)s)")
    parser.add_argument("--wait", "--timeout", dest="wait", type=float, default=300.0, metavar="SECONDS",
                        help="how long to wait for Elasticsearch and Kibana to answer before giving up "
                             "(default %(default)g)")
    args = parser.parse_args(argv)
    if args.wait < 0:
        parser.error("--wait must be 0 or more seconds")
    try:
        count = asyncio.run(
            setup_elk(
                args.elasticsearch, args.kibana, username=environ.get("ELASTIC_USERNAME"),
                password=environ.get("ELASTIC_PASSWORD"), timeout=args.wait,
            )
        )
    except SetupError as exc:
        print(f"setup-elk: {exc}", file=sys.stderr, flush=True)
        return 1
    say(f"done: ILM policy and index template {NAME} installed; {count} Kibana objects imported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
