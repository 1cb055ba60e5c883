"""Rules for the reply objectives: what users wait for (receipt to reply delivered), the bot's own part of
it, and how long the oldest message has waited for a model slot. Written to their own rule file."""

from __future__ import annotations

from typing import Any

from prometheus_client.utils import floatToGoString

from monitoring.rules import number
from monitoring.slo import SLO, BurnRateAlert, Latency
from servicekit.latency import REPLY_BUCKETS, REPLY_OVERHEAD_BUCKETS

DASHBOARD_REPLIES = "/d/botwatch-replies"
Rule = dict[str, Any]

# objective name -> (histogram, its buckets, what a bad event is called)
OBJECTIVES = {
    "reply": ("bot_reply_duration_seconds", REPLY_BUCKETS, "replies slower than the threshold"),
    "reply_overhead": ("bot_reply_overhead_seconds", REPLY_OVERHEAD_BUCKETS,
                       "replies whose queue wait and send took longer than the threshold"),
}


def _target(slo: SLO, name: str) -> Latency:
    target: Latency = getattr(slo, name)
    return target


def slow_share(name: str, threshold: float, window: str) -> str:
    """Share of delivered replies slower than the threshold, read from the bucket at exactly that bound."""
    metric = OBJECTIVES[name][0]
    le = floatToGoString(threshold)
    return (
        f'1 - (sum(rate({metric}_bucket{{le="{le}"}}[{window}]))'
        f" / sum(rate({metric}_count[{window}])))"
    )


def sli_name(name: str, window: str) -> str:
    return f"botwatch:{name}_slow_per_reply:ratio_rate{window}"


def budget_name(name: str) -> str:
    return f"botwatch:{name}_budget_remaining:ratio"


def _check_buckets(slo: SLO) -> None:
    for name, (metric, buckets, _) in OBJECTIVES.items():
        threshold = _target(slo, name).threshold_seconds
        if threshold not in buckets:
            raise SystemExit(
                f"slo.yaml {name}.threshold_seconds {threshold} is not a bucket bound of {metric} {buckets}; "
                "the SLI could only be guessed"
            )


def recording_groups(slo: SLO) -> list[dict[str, Any]]:
    _check_buckets(slo)
    windows: list[Rule] = []
    budgets: list[Rule] = []
    for name in OBJECTIVES:
        target = _target(slo, name)
        for window in slo.windows:
            windows.append({"record": sli_name(name, window), "expr": slow_share(name, target.threshold_seconds, window)})
        budgets.append({"record": sli_name(name, slo.period),
                        "expr": slow_share(name, target.threshold_seconds, slo.period)})
        budgets.append({"record": budget_name(name),
                        "expr": f"1 - {sli_name(name, slo.period)} / {number(target.budget)}"})
    constants: list[Rule] = [
        {"record": f"botwatch:{name}_threshold_seconds", "expr": f"vector({number(_target(slo, name).threshold_seconds)})"}
        for name in OBJECTIVES
    ]
    constants.append({"record": "botwatch:queue_age_max_seconds", "expr": f"vector({number(slo.queue_age.max_seconds)})"})
    return [
        {"name": "botwatch-reply-sli", "rules": windows},
        {"name": "botwatch-reply-sli-period", "interval": "1m", "rules": budgets},
        {"name": "botwatch-reply-constants", "interval": "1m", "rules": constants},
    ]


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _burn_alert(slo: SLO, name: str, alert: BurnRateAlert) -> Rule:
    target = _target(slo, name)
    threshold = number(alert.burn_rate * target.budget)
    long_sli, short_sli = sli_name(name, alert.long_window), sli_name(name, alert.short_window)
    what = OBJECTIVES[name][2]
    objective = f"{number(target.objective * 100)} % within {number(target.threshold_seconds)} s"
    return {
        "alert": f"{_title(name)}BudgetBurn{alert.long_window}",
        "expr": f"{long_sli} > {threshold} and {short_sli} > {threshold}",
        "for": alert.for_,
        "labels": {
            "severity": alert.severity, "slo": name,
            "long_window": alert.long_window, "short_window": alert.short_window,
        },
        "annotations": {
            "summary": f"{name} error budget ({objective}) burning at {number(alert.burn_rate)}x or faster",
            "description": (
                f"{what} are using the {name} error budget at {number(alert.burn_rate)} times the sustainable "
                f"rate over both {alert.long_window} and {alert.short_window}; "
                f"{alert.long_window} share now: {{{{ $value | humanizePercentage }}}}."
            ),
            "dashboard": DASHBOARD_REPLIES,
        },
    }


def alert_rules(slo: SLO) -> list[Rule]:
    rules = [_burn_alert(slo, name, alert) for name in OBJECTIVES for alert in slo.burn_rate_alerts]
    rules.append({
        "alert": "QueueBacklogAging",
        "expr": f'max by (instance, queue) (bot_queue_oldest_age_seconds) > {number(slo.queue_age.max_seconds)}',
        "for": slo.queue_age.for_,
        "labels": {"severity": "page"},
        "annotations": {
            "summary": "messages on {{ $labels.instance }} wait over "
            + f"{number(slo.queue_age.max_seconds)} s for an answer to start",
            "description": (
                "The oldest message in the {{ $labels.queue }} queue has waited {{ $value | humanizeDuration }}: "
                "the model is slower or more limited than the load needs (see in-flight model calls against "
                "MODEL_MAX_CONCURRENCY), or the queue store is failing."
            ),
            "dashboard": DASHBOARD_REPLIES,
        },
    })
    return rules


def rule_files(slo: SLO) -> dict[str, dict[str, Any]]:
    return {
        "replies.rules.yml": {
            "groups": [*recording_groups(slo), {"name": "botwatch-reply-alerts", "rules": alert_rules(slo)}],
        },
    }
