"""Active health probing: each upstream is up or down by consecutive probe results."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import aiohttp

from sidecar.metrics import SidecarMetrics

log = logging.getLogger("sidecar.health")


class UpstreamHealth:
    """Up/down state of one upstream with hysteresis: down after N failures in a row, up after M successes.

    Probes drive it; a live request whose connection is refused counts as a failure too, so a
    dead upstream under traffic is detected before the next probe.
    """

    def __init__(self, name: str, failures_to_down: int, successes_to_up: int, metrics: SidecarMetrics) -> None:
        self.name = name
        self.up = True
        self.failures_to_down = failures_to_down
        self.successes_to_up = successes_to_up
        self._failures = 0
        self._successes = 0
        self._gauge = metrics.upstream_up.labels(name)
        self._gauge.set(1)

    def set_initial(self, healthy: bool) -> None:
        """Take the first probe's verdict as it is: there is no history to smooth yet."""
        self._set(healthy)

    def record_success(self) -> None:
        self._failures = 0
        self._successes += 1
        if not self.up and self._successes >= self.successes_to_up:
            self._set(True)

    def record_failure(self) -> None:
        self._successes = 0
        self._failures += 1
        if self.up and self._failures >= self.failures_to_down:
            self._set(False)

    def _set(self, healthy: bool) -> None:
        if healthy != self.up:
            if healthy:
                log.info("upstream %s is up", self.name, extra={"labels.upstream": self.name})
            else:
                log.warning("upstream %s is down", self.name, extra={"labels.upstream": self.name})
        self.up = healthy
        self._failures = self._successes = 0
        self._gauge.set(1 if healthy else 0)


class Prober:
    """Probe one upstream every `interval` seconds with `GET path`, bounded by `timeout`."""

    def __init__(
        self,
        health: UpstreamHealth,
        base_url: str,
        path: str,
        interval: float,
        timeout: float,
        metrics: SidecarMetrics,
        client: aiohttp.ClientSession,
    ) -> None:
        self.health = health
        self.url = base_url.rstrip("/") + path
        self.interval = interval
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._client = client
        name = health.name
        self._duration = metrics.probe_duration.labels(name)
        self._results = {result: metrics.probes.labels(name, result) for result in ("ok", "bad_status", "timeout", "refused")}

    @property
    def retry_after(self) -> int:
        """Seconds a client should wait: the soonest a down upstream can be seen up again."""
        return max(1, math.ceil(self.interval * self.health.successes_to_up))

    async def probe(self) -> bool:
        """One probe; records its result and latency, returns whether it succeeded."""
        started = time.perf_counter()
        try:
            async with self._client.get(self.url, timeout=self.timeout, allow_redirects=False) as response:
                await response.read()
                result = "ok" if 200 <= response.status < 300 else "bad_status"
        except asyncio.TimeoutError:
            result = "timeout"
        except (aiohttp.ClientError, OSError):
            result = "refused"
        self._duration.observe(time.perf_counter() - started)
        self._results[result].inc()
        return result == "ok"

    async def run(self) -> None:
        """Probe forever at a fixed rate (a slow probe does not push the schedule back)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.interval
            if await self.probe():
                self.health.record_success()
            else:
                self.health.record_failure()
            await asyncio.sleep(max(0.0, next_at - loop.time()))
