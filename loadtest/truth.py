"""Check that the bot's and the sidecar's own metrics agree with what the load generator saw."""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.record import Outcome, RunRecord
from loadtest.scrape import LabelFilter, Labels, Snapshot, bucket_index, bucket_label, histogram_quantile
from loadtest.settings import CHAT_ROUTE

# Timings taken by different processes sharing two cores differ by scheduling delays: runs here showed
# a generator P99 of 14-17 ms over a bot whose every request took under 5 ms. Buckets up to this bound
# are therefore compared as one; above it, where the SLO's decisions are made, every bucket counts.
RESOLUTION_S = 0.025


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class TruthReport:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def line(self) -> str:
        """One line: 'truth check passed (n checks)' or each mismatch named."""
        if self.passed:
            return f"truth check passed ({len(self.checks)} checks: {', '.join(c.name for c in self.checks)})"
        return "truth check FAILED: " + "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.passed)


def _count_check(name: str, metric: float, generator: int, how: str) -> Check:
    ok = metric == generator
    detail = f"{how}: metrics {metric:g}, generator {generator}"
    return Check(name, ok, detail if ok else detail + f" (off by {metric - generator:+g})")


def check_truth(
    record: RunRecord,
    bot: Snapshot | None,
    sidecar: Snapshot | None,
    objective: float,
) -> TruthReport:
    """Compare counter and histogram deltas over the run with the generator's exact counts and percentile.

    `bot` and `sidecar` are after-minus-before snapshots; None means that process is not in the path.
    """
    checks: list[Check] = []
    answered = record.total() - record.total(Outcome.NO_RESPONSE)
    rejected = record.total(Outcome.REJECTED)
    lost = record.total(Outcome.NO_RESPONSE)
    if lost:
        # A request without an answer may or may not have reached a server, so no count can be exact.
        checks.append(Check("answers", False, f"{lost} requests got no HTTP answer; counters cannot be matched"))

    routes = {route for route, _ in record.counts}
    on_routes = lambda labels: labels.get("route") in routes  # noqa: E731
    held_back = 0.0
    if sidecar is not None:
        checks.append(_count_check(
            "sidecar requests", sidecar.total("sidecar_requests_total", on_routes), answered,
            "sidecar_requests_total delta",
        ))
        ratelimited = sidecar.total("sidecar_ratelimited_total")
        shed = sidecar.total("sidecar_shed_total")
        checks.append(_count_check("sidecar 429s", ratelimited, rejected, "sidecar_ratelimited_total delta"))
        held_back = ratelimited + shed

    if bot is not None:
        expected = answered - int(held_back)
        how = "bot_requests_total delta" + (" (sidecar 429s and sheds subtracted)" if sidecar is not None else "")
        checks.append(_count_check("bot requests", bot.total("bot_requests_total", on_routes), expected, how))
        for route, statuses in sorted(record.answered_by_route().items()):
            ok_generator = sum(n for status, n in statuses.items() if 200 <= status < 300)
            ok_metric = bot.total("bot_requests_total", _ok_on(route))
            checks.append(_count_check(f"bot 2xx on {route}", ok_metric, ok_generator, "2xx by route"))
        if any(route != CHAT_ROUTE for route in routes):
            # Every callback carried a fresh event id: one taken for a re-delivery would go unanswered.
            duplicates = bot.total("bot_duplicates_total")
            checks.append(_count_check("bot duplicates", duplicates, 0, "bot_duplicates_total delta for unique events"))
    checks += _histogram_chain(record, bot, sidecar, on_routes, objective)
    return TruthReport(checks)


def _ok_on(route: str) -> LabelFilter:
    def matches(labels: Labels) -> bool:
        return labels.get("route") == route and labels.get("status", "").startswith("2")

    return matches


def _histogram_chain(
    record: RunRecord, bot: Snapshot | None, sidecar: Snapshot | None, on_routes: LabelFilter, objective: float
) -> list[Check]:
    """Each latency histogram against the measurement just outside it: generator, then sidecar, then bot.

    Every layer adds its own time (the generator its network and scheduling, the sidecar its hop),
    so a histogram may sit one bucket below the layer outside it (docs/observability.md: "within one
    bucket"), and buckets under RESOLUTION_S count as one. The generator is never faster than the
    server it talks to; a server histogram above what the client saw is a lie too.
    """
    exact_s = record.percentile_ms(objective) / 1000
    if math.isnan(exact_s):
        return [Check("latency histograms", False, "no served request to compare with")]
    layers = [("sidecar", sidecar, "sidecar_request_duration_seconds"), ("bot", bot, "bot_request_duration_seconds")]
    checks = []
    outer_name, outer_s, lowest = "generator's exact", exact_s, 0
    for name, snapshot, histogram in layers:
        if snapshot is None:
            continue
        buckets = snapshot.buckets(histogram, on_routes)
        bounds = [upper for upper, _ in buckets if not math.isinf(upper)]
        estimate = histogram_quantile(objective, buckets)
        if math.isnan(estimate):
            checks.append(Check(f"{name} latency histogram", False, "no observations on the loaded routes"))
            continue
        inner, outer = bucket_index(estimate, bounds), bucket_index(outer_s, bounds)
        detail = (
            f"estimate {estimate * 1000:.1f} ms in {bucket_label(inner, bounds)}, "
            f"{outer_name} {outer_s * 1000:.3f} ms in {bucket_label(outer, bounds)}"
        )
        floor = bucket_index(RESOLUTION_S, bounds)
        apart = max(outer, floor) - max(inner, floor)
        checks.append(Check(f"{name} latency histogram", lowest <= apart <= 1, detail))
        # Between two servers the outer one's histogram also counts fast refusals (429s), so allow either side.
        outer_name, outer_s, lowest = f"{name}'s estimate", estimate, -1
    return checks
