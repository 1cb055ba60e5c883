"""Check that the bot's and the sidecar's own metrics agree with what the load generator saw."""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.record import Outcome, RunRecord
from loadtest.scrape import Snapshot, bucket_index, bucket_label, histogram_quantile


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
    upward_bucket_slack: int = 1,
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
            ok_metric = bot.total(
                "bot_requests_total",
                lambda labels, r=route: labels.get("route") == r and labels.get("status", "").startswith("2"),
            )
            checks.append(_count_check(f"bot 2xx on {route}", ok_metric, ok_generator, "2xx by route"))
        checks.append(_histogram_check(
            "bot latency histogram", bot.buckets("bot_request_duration_seconds", on_routes),
            record, objective, upward_bucket_slack,
        ))
    if sidecar is not None and sidecar.has("sidecar_request_duration_seconds_bucket"):
        checks.append(_histogram_check(
            "sidecar latency histogram", sidecar.buckets("sidecar_request_duration_seconds", on_routes),
            record, objective, upward_bucket_slack,
        ))
    return TruthReport(checks)


def _histogram_check(
    name: str, buckets: list[tuple[float, float]], record: RunRecord, objective: float, slack: int
) -> Check:
    """The histogram's quantile estimate must land in the bucket of the generator's exact percentile.

    The generator also times the network and its own scheduling, which only adds latency, so its
    percentile may sit `slack` buckets above the server's (OBSERVABILITY.md: "within one bucket"),
    never below.
    """
    bounds = [upper for upper, _ in buckets if not math.isinf(upper)]
    estimate = histogram_quantile(objective, buckets)
    exact_s = record.percentile_ms(objective) / 1000
    if math.isnan(estimate) or math.isnan(exact_s):
        return Check(name, False, "no observations in the histogram or no served requests")
    server, client = bucket_index(estimate, bounds), bucket_index(exact_s, bounds)
    detail = (
        f"estimate {estimate * 1000:.1f} ms in {bucket_label(server, bounds)}, "
        f"generator's exact {exact_s * 1000:.3f} ms in {bucket_label(client, bounds)}"
    )
    return Check(name, 0 <= client - server <= slack, detail)
