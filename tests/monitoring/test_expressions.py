"""Alert signals: an alert's expression without its thresholds, split on `and`."""

from __future__ import annotations

import pytest

from monitoring.expressions import alert_signals, expand_variables, split_set_operations, strip_comparison


@pytest.mark.parametrize(
    ("expr", "signal"),
    [
        ('up{job="bot"} == 0', 'up{job="bot"}'),
        ("rate(x[5m]) > 0.7", "rate(x[5m])"),
        ("a / on (job) group_left b > 0.8", "a / on (job) group_left b"),
        ("q > on (platform) 0.5 * deadline", "q"),
        ('x{a!="b",c=~"d|e"} >= 1', 'x{a!="b",c=~"d|e"}'),
        ("sum(rate(x[5m])) by (p)", "sum(rate(x[5m])) by (p)"),
        ('x{path="a>b"} < 3', 'x{path="a>b"}'),
    ],
)
def test_strip_comparison_keeps_what_is_compared(expr: str, signal: str) -> None:
    assert strip_comparison(expr) == signal


def test_set_operations_split_only_at_the_top_level() -> None:
    expr = 'a > 1 and (b or c) > 2 unless d{x="and or"}'
    assert split_set_operations(expr) == ["a > 1", "(b or c) > 2", 'd{x="and or"}']


def test_a_multi_window_alert_has_two_signals() -> None:
    assert alert_signals("long > 0.0144 and short > 0.0144") == ["long", "short"]


def test_variables_expand_to_match_everything() -> None:
    expr = 'rate(x{platform=~"$platform",instance=~"${instance}"}[$__rate_interval])'
    assert expand_variables(expr, "1m") == 'rate(x{platform=~".*",instance=~".*"}[1m])'
