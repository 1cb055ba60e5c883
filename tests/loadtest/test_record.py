"""The generator's record keeps exact latencies and counts 429s apart from errors."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from loadtest.record import NO_RESPONSE, Outcome, Recorder, RunRecord, classify, exact_percentile


def test_classification_keeps_sidecar_429s_out_of_the_errors() -> None:
    assert classify(200, failed=False) is Outcome.OK
    assert classify(429, failed=False) is Outcome.REJECTED
    assert classify(503, failed=False) is Outcome.ERROR
    assert classify(404, failed=False) is Outcome.ERROR
    assert classify(200, failed=True) is Outcome.ERROR  # a 200 whose body breaks the protocol
    assert classify(NO_RESPONSE, failed=True) is Outcome.NO_RESPONSE


def test_percentiles_are_exact_values_never_rounded_like_locusts() -> None:
    values = [float(v) for v in range(1, 101)]
    values[-1] = 123.456
    assert exact_percentile(values, 0.99) == 99.0
    assert exact_percentile(values, 1.0) == 123.456
    assert exact_percentile([612.345], 0.99) == 612.345


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1), st.floats(0.01, 1.0))
def test_nearest_rank_holds_at_least_q_of_the_values(values: list[float], q: float) -> None:
    p = exact_percentile(values, q)
    assert p in values
    assert sum(v <= p for v in values) >= q * len(values) - 1e-9
    assert sum(v < p for v in values) < q * len(values) + 1e-9


def test_a_saved_record_reads_back_identically_with_its_figures(tmp_path: Path) -> None:
    rec = Recorder(started=1000.0)
    for i in range(97):
        rec.add("/api/v1/chat", 200, 10.0 + i * 0.001, 1000.5 + i * 0.01, None)
    rec.add("/api/v1/chat", 500, 250.5, 1001.5, None)
    rec.add("/api/v1/chat", 429, 0.7, 1001.6, None)
    rec.add("/api/v1/chat", NO_RESPONSE, 5000.0, 1002.0, "ConnectionRefusedError: refused")
    rec.save(tmp_path)

    run = RunRecord.load(tmp_path)
    assert run.counts == dict(rec.counts)
    assert run.latencies_ms == tuple(rec.latencies_ms)
    assert run.served == 98 and run.total(Outcome.REJECTED) == 1 and run.errors == 2
    assert run.error_ratio == 2 / 99  # the 429 is neither an error nor part of the denominator
    assert run.percentile_ms(0.99) == 250.5  # the lost request has no latency to count
    assert run.answered_by_route() == {"/api/v1/chat": {200: 97, 500: 1, 429: 1}}
    assert run.error_reasons == {"/api/v1/chat: HTTP 500": 1, "/api/v1/chat: ConnectionRefusedError: refused": 1}


def test_a_window_keeps_only_the_requests_that_ended_inside_it() -> None:
    rec = Recorder()
    for end in (1.0, 2.0, 3.0, 4.0):
        rec.add("/x", 200, end * 10, end, None)
    window = rec.as_record().window(2.0, 4.0)
    assert window.latencies_ms == (20.0, 30.0)
