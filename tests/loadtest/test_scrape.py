"""/metrics pages read into deltas, and quantiles estimated exactly as PromQL's histogram_quantile does."""

from __future__ import annotations

import math

from loadtest.scrape import Snapshot, bucket_index, bucket_label, histogram_quantile

PAGE = """\
# HELP bot_requests_total HTTP requests answered by the bot.
# TYPE bot_requests_total counter
bot_requests_total{method="POST",platform="api",route="/api/v1/chat",status="200"} %(ok)s
bot_requests_total{method="GET",platform="system",route="/metrics",status="200"} 3.0
# HELP bot_request_duration_seconds Time from request received to response sent.
# TYPE bot_request_duration_seconds histogram
bot_request_duration_seconds_bucket{le="0.1",platform="api",route="/api/v1/chat"} %(fast)s
bot_request_duration_seconds_bucket{le="0.5",platform="api",route="/api/v1/chat"} %(ok)s
bot_request_duration_seconds_bucket{le="+Inf",platform="api",route="/api/v1/chat"} %(ok)s
bot_request_duration_seconds_count{platform="api",route="/api/v1/chat"} %(ok)s
bot_request_duration_seconds_sum{platform="api",route="/api/v1/chat"} 1.5
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 17.0
"""


def test_deltas_count_only_what_happened_between_two_scrapes() -> None:
    before = Snapshot.parse(PAGE % {"ok": 10, "fast": 5})
    after = Snapshot.parse(PAGE % {"ok": 110, "fast": 55})
    delta = after - before
    chat = lambda labels: labels.get("route") == "/api/v1/chat"  # noqa: E731
    assert delta.total("bot_requests_total", chat) == 100
    assert delta.total("bot_requests_total") == 100  # /metrics did not move
    assert delta.buckets("bot_request_duration_seconds", chat) == [(0.1, 50.0), (0.5, 100.0), (math.inf, 100.0)]
    assert after.value("process_open_fds") == 17.0


def test_a_series_born_during_the_run_counts_from_zero() -> None:
    before = Snapshot.parse("# TYPE x_total counter\n")
    after = Snapshot.parse('# TYPE x_total counter\nx_total{a="1"} 4\n')
    assert (after - before).total("x_total") == 4


def test_histogram_quantile_interpolates_like_promql() -> None:
    buckets = [(0.1, 50.0), (0.5, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == 0.1
    assert math.isclose(histogram_quantile(0.99, buckets), 0.1 + 0.4 * (99 - 50) / 50)
    # Ranks landing in +Inf answer with the highest finite bound, as Prometheus does.
    assert histogram_quantile(0.99, [(0.1, 0.0), (0.5, 0.0), (math.inf, 10.0)]) == 0.5
    assert math.isnan(histogram_quantile(0.99, [(0.1, 0.0), (math.inf, 0.0)]))


def test_bucket_index_uses_upper_inclusive_bounds() -> None:
    bounds = [0.005, 0.01, 0.5]
    assert bucket_index(0.005, bounds) == 0
    assert bucket_index(0.0051, bounds) == 1
    assert bucket_index(0.6, bounds) == 3
    assert bucket_label(1, bounds) == "(0.005 s, 0.01 s]"
    assert bucket_label(3, bounds) == "(0.5 s, inf s]"
