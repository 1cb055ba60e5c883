"""The truth check fails a run whose metrics disagree with the load generator, naming the mismatch."""

from __future__ import annotations

import math

from loadtest.record import Recorder, RunRecord
from loadtest.scrape import Snapshot
from loadtest.truth import check_truth

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
CHAT = "/api/v1/chat"


def run_of(latencies_ms: list[float], status: int = 200, rejected: int = 0) -> RunRecord:
    rec = Recorder()
    for i, lat in enumerate(latencies_ms):
        rec.add(CHAT, status, lat, float(i), None)
    for i in range(rejected):
        rec.add(CHAT, 429, 0.5, float(i), None)
    return rec.as_record()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def histogram(name: str, latencies_s: list[float], labels: tuple[tuple[str, str], ...]) -> Samples:
    return {
        (f"{name}_bucket", tuple(sorted((("le", str(le)), *labels)))): float(sum(lat <= le for lat in latencies_s))
        for le in (*BOUNDS, math.inf)
    }


def bot_delta(latencies_s: list[float], status: str = "200") -> Snapshot:
    """What the bot's /metrics would gain from serving these requests."""
    labels = (("method", "POST"), ("platform", "api"), ("route", CHAT), ("status", status))
    return Snapshot({
        ("bot_requests_total", labels): float(len(latencies_s)),
        **histogram("bot_request_duration_seconds", latencies_s, (("platform", "api"), ("route", CHAT))),
    })


def sidecar_delta(answered: int, ratelimited: int, shed: int = 0, latency_s: float = 0.003) -> Snapshot:
    return Snapshot({
        ("sidecar_requests_total", (("route", CHAT), ("status", "200"), ("upstream", "stable"))): float(answered),
        ("sidecar_ratelimited_total", (("rule", "per_ip"),)): float(ratelimited),
        ("sidecar_shed_total", (("reason", "max_in_flight"),)): float(shed),
        **histogram("sidecar_request_duration_seconds", [latency_s] * answered,
                    (("route", CHAT), ("upstream", "stable"))),
    })


def test_metrics_that_match_the_generator_pass() -> None:
    latencies = [4.0] * 990 + [40.0] * 10
    report = check_truth(run_of(latencies), bot_delta([x / 1000 for x in latencies]), None, 0.99)
    assert report.passed, report.line()


def test_a_counter_one_request_short_fails_and_says_by_how_much() -> None:
    latencies = [4.0] * 100
    report = check_truth(run_of(latencies), bot_delta([0.004] * 99), None, 0.99)
    assert not report.passed
    assert "bot requests: bot_requests_total delta: metrics 99, generator 100 (off by -1)" in report.line()


def test_a_histogram_that_hides_slow_requests_fails() -> None:
    # The generator saw a P99 of 600 ms; a bot whose histogram says everything took 4 ms lies.
    latencies = [600.0] * 100
    report = check_truth(run_of(latencies), bot_delta([0.004] * 100), None, 0.99)
    assert not report.passed
    assert "bot latency histogram" in report.line() and "(0.5 s, 0.75 s]" in report.line()


def test_the_generator_may_sit_one_bucket_above_the_server_never_below() -> None:
    run = run_of([70.0] * 100)  # client: (0.05, 0.1]
    assert check_truth(run, bot_delta([0.04] * 100), None, 0.99).passed  # server one bucket lower
    assert not check_truth(run, bot_delta([0.2] * 100), None, 0.99).passed  # server above the client
    assert not check_truth(run_of([300.0] * 100), bot_delta([0.07] * 100), None, 0.99).passed  # two buckets


def test_differences_below_the_scheduling_resolution_are_not_told_apart() -> None:
    # 17 ms at the client over 4 ms in the bot: scheduling delay on a shared machine, not a lying histogram.
    assert check_truth(run_of([17.0] * 100), bot_delta([0.004] * 100), None, 0.99).passed
    # But 90 ms at the client over 4 ms in the bot is time the bot's histogram does not see.
    assert not check_truth(run_of([90.0] * 100), bot_delta([0.004] * 100), None, 0.99).passed


def test_sidecar_429s_are_accounted_before_comparing_the_bots_count() -> None:
    run = run_of([4.0] * 100, rejected=20)
    report = check_truth(run, bot_delta([0.004] * 100), sidecar_delta(answered=120, ratelimited=20), 0.99)
    assert report.passed, report.line()
    lying = check_truth(run, bot_delta([0.004] * 100), sidecar_delta(answered=120, ratelimited=15), 0.99)
    assert "sidecar 429s: sidecar_ratelimited_total delta: metrics 15, generator 20" in lying.line()


def test_requests_shed_by_the_sidecar_never_reach_the_bot() -> None:
    rec = Recorder()
    for i in range(100):
        rec.add(CHAT, 200, 4.0, float(i), None)
    for i in range(5):
        rec.add(CHAT, 503, 0.3, float(i), None)
    report = check_truth(rec.as_record(), bot_delta([0.004] * 100), sidecar_delta(105, 0, shed=5), 0.99)
    assert report.passed, report.line()


def test_requests_without_an_answer_make_exact_counting_impossible() -> None:
    rec = Recorder()
    rec.add(CHAT, 200, 4.0, 1.0, None)
    rec.add(CHAT, 0, 5000.0, 2.0, "ConnectTimeout")
    report = check_truth(rec.as_record(), bot_delta([0.004]), None, 0.99)
    assert not report.passed and "1 requests got no HTTP answer" in report.line()


def test_through_the_sidecar_each_histogram_is_held_to_the_layer_just_outside_it() -> None:
    run = run_of([140.0] * 100)  # the client: (0.1, 0.25]
    bot = bot_delta([0.04] * 100)  # two buckets below the client, one below the sidecar
    assert check_truth(run, bot, sidecar_delta(100, 0, latency_s=0.08), 0.99).passed
    # A sidecar whose histogram says 30 ms while the client saw 140 hides time somewhere.
    report = check_truth(run, bot, sidecar_delta(100, 0, latency_s=0.03), 0.99)
    expected = "sidecar latency histogram: estimate 49.8 ms in (0.025 s, 0.05 s], generator's exact 140.000 ms"
    assert expected in report.line()


def test_a_unique_callback_taken_for_a_duplicate_fails_the_run() -> None:
    rec = Recorder()
    for i in range(10):
        rec.add("/feishu/event", 200, 4.0, float(i), None)
    labels = (("method", "POST"), ("platform", "feishu"), ("route", "/feishu/event"), ("status", "200"))
    bot = Snapshot({
        ("bot_requests_total", labels): 10.0,
        ("bot_duplicates_total", (("platform", "feishu"),)): 1.0,
        **histogram("bot_request_duration_seconds", [0.004] * 10, (("platform", "feishu"), ("route", "/feishu/event"))),
    })
    report = check_truth(rec.as_record(), bot, None, 0.99)
    assert "bot duplicates: bot_duplicates_total delta for unique events: metrics 1, generator 0" in report.line()
