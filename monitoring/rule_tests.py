"""promtool cases pinning every burn-rate alert to slo.yaml: just above and just below its threshold, per window.

The threshold of each case is computed here from slo.yaml (burn rate x the SLO's error budget),
not read back from the rule, so a rule whose threshold drifts from slo.yaml fails `promtool test
rules`. Cases feed the SLI recording rules' series directly (the raw metrics are absent, so the
recording rules stay silent), which makes them independent of how an SLI is computed and lets
any burn-rate alert built later, for any SLO, get its cases without a line written by hand.
"""

from __future__ import annotations

import re
from typing import Any

from monitoring import replies
from monitoring.expressions import alert_signals
from monitoring.rules import Rule, alert_rules, number
from monitoring.slo import SLO, duration_seconds

# "Just": 1 % either side of the threshold.
ABOVE, BELOW = 1.01, 0.99
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_VALUE_PERCENT = "{{ $value | humanizePercentage }}"


def burn_rate_alerts(rules: list[Rule]) -> list[Rule]:
    """The alerts that compare an SLI over a long and a short window (labelled as such)."""
    return [rule for rule in rules if {"slo", "long_window", "short_window"} <= set(rule.get("labels", {}))]


def threshold_from_slo(slo: SLO, rule: Rule) -> float:
    """burn rate x error budget, from slo.yaml, for the alert's SLO and window pair."""
    labels = rule["labels"]
    objective = getattr(slo, labels["slo"], None)
    if objective is None or not hasattr(objective, "budget"):
        raise SystemExit(f"{rule['alert']}: slo.yaml has no SLO {labels['slo']!r} with a budget to pin it to")
    matches = [a for a in slo.burn_rate_alerts
               if (a.long_window, a.short_window) == (labels["long_window"], labels["short_window"])]
    if len(matches) != 1:
        raise SystemExit(f"{rule['alert']}: no single burn_rate_alerts entry for {labels['long_window']}/"
                         f"{labels['short_window']} in slo.yaml")
    return float(matches[0].burn_rate * objective.budget)


def _percent(value: float) -> str:
    """Prometheus's humanizePercentage: Go's %.4g of value x 100, then %."""
    return f"{value * 100:.4g}%"


def _series(signals: list[str], rule: Rule) -> tuple[str, str]:
    if len(signals) != 2 or not all(_METRIC_NAME.fullmatch(s) for s in signals):
        raise SystemExit(f"{rule['alert']}: a burn-rate alert must compare two recorded SLIs, got {signals}")
    return signals[0], signals[1]


def _case(rule: Rule, long_series: str, short_series: str, long_value: float, short_value: float,
          fires: bool) -> dict[str, Any]:
    eval_seconds = duration_seconds(rule.get("for", "0s")) + 120
    expected: list[dict[str, Any]] = []
    if fires:
        annotations = {k: v.replace(_VALUE_PERCENT, _percent(long_value)) for k, v in rule["annotations"].items()}
        expected = [{"exp_labels": dict(rule["labels"]), "exp_annotations": annotations}]
    return {
        "interval": "1m",
        "input_series": [
            {"series": long_series, "values": f"{number(long_value)}x{eval_seconds // 60 + 1}"},
            {"series": short_series, "values": f"{number(short_value)}x{eval_seconds // 60 + 1}"},
        ],
        "alert_rule_test": [{"eval_time": f"{eval_seconds // 60}m", "alertname": rule["alert"],
                             "exp_alerts": expected}],
    }


def threshold_cases(slo: SLO) -> dict[str, Any]:
    """The promtool test file: for each burn-rate alert, fires above, silent when either window is below."""
    tests = []
    for rule in burn_rate_alerts([*alert_rules(slo), *replies.alert_rules(slo)]):
        long_series, short_series = _series(alert_signals(rule["expr"]), rule)
        threshold = threshold_from_slo(slo, rule)
        above, below = threshold * ABOVE, threshold * BELOW
        for name, long_value, short_value, fires in (
            ("fires with both windows just above", above, above, True),
            ("stays silent with the long window just below", below, above, False),
            ("stays silent with the short window just below", above, below, False),
        ):
            case = _case(rule, long_series, short_series, long_value, short_value, fires)
            tests.append({"name": f"{rule['alert']} ({number(threshold)}) {name}", **case})
    return {
        "rule_files": ["../rules/recording.rules.yml", "../rules/alerts.rules.yml", "../rules/replies.rules.yml"],
        "evaluation_interval": "1m",
        "tests": tests,
    }
