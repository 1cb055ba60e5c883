"""Prometheus recording and alert rules built from the SLOs (SRE workbook multi-window burn rates)."""

from __future__ import annotations

from typing import Any

from prometheus_client.utils import floatToGoString

from monitoring.slo import SLO, BurnRateAlert
from servicekit.latency import LATENCY_BUCKETS

# Health checks and scrapes are the bot's own plumbing, not the service users get.
USER_TRAFFIC = 'platform!="system"'
# The same routes as the sidecar labels them (it has no platform label).
SIDECAR_USER_TRAFFIC = 'route!~"/health|/api/health|/ready"'
DASHBOARD_SLO = "/d/botwatch-slo"
DASHBOARD_BOT = "/d/botwatch-bot-red"
DASHBOARD_SIDECAR = "/d/botwatch-sidecar"
DASHBOARD_RESOURCES = "/d/botwatch-resources"

Rule = dict[str, Any]


def number(value: float) -> str:
    """A threshold as PromQL text, free of float noise (14.4 * 0.001 is 0.0144, not 0.014400000000000001)."""
    rounded = round(value, 12)
    return str(int(rounded)) if rounded == int(rounded) else repr(rounded)


def availability_errors(window: str) -> str:
    """Share of requests answered with a 5xx, measured at the edge users reach.

    The sidecar sees every request, including the 5xx the bot returns through it and
    those it makes itself (shedding, upstream down); 429s are not errors. Without a
    sidecar the bot's own counts stand in.
    """
    sidecar = (
        f'(sum(rate(sidecar_requests_total{{{SIDECAR_USER_TRAFFIC},status=~"5.."}}[{window}])) or vector(0))'
        f" / sum(rate(sidecar_requests_total{{{SIDECAR_USER_TRAFFIC}}}[{window}]))"
    )
    bot = (
        f'(sum(rate(bot_requests_total{{{USER_TRAFFIC},status=~"5.."}}[{window}])) or vector(0))'
        f" / sum(rate(bot_requests_total{{{USER_TRAFFIC}}}[{window}]))"
    )
    return f"({sidecar}) or ({bot})"


def latency_slow(threshold: float, window: str) -> str:
    """Share of requests slower than the threshold, read from the bucket at exactly that bound.

    Measured at the edge users reach, like availability: the sidecar's histogram includes the
    time a request waits in the bot's socket backlog before the bot's handler (and its own
    histogram) starts, which past the knee is most of what clients wait. Without a sidecar the
    bot's histogram stands in; it stays the per-platform breakdown on the dashboards.
    """
    le = floatToGoString(threshold)
    sidecar = (
        f'1 - (sum(rate(sidecar_request_duration_seconds_bucket{{{SIDECAR_USER_TRAFFIC},le="{le}"}}[{window}]))'
        f" / sum(rate(sidecar_request_duration_seconds_count{{{SIDECAR_USER_TRAFFIC}}}[{window}])))"
    )
    bot = (
        f'1 - (sum(rate(bot_request_duration_seconds_bucket{{{USER_TRAFFIC},le="{le}"}}[{window}]))'
        f" / sum(rate(bot_request_duration_seconds_count{{{USER_TRAFFIC}}}[{window}])))"
    )
    return f"({sidecar}) or ({bot})"


def sli_name(slo: str, window: str) -> str:
    kind = "availability_errors" if slo == "availability" else "latency_slow"
    return f"botwatch:{kind}_per_request:ratio_rate{window}"


def budget_name(slo: str) -> str:
    return f"botwatch:{slo}_budget_remaining:ratio"


def recording_groups(slo: SLO) -> list[dict[str, Any]]:
    """The SLIs over every alert window, the budget left over the period, and the constants dashboards plot."""
    threshold = slo.latency.threshold_seconds
    if threshold not in LATENCY_BUCKETS:
        raise SystemExit(
            f"slo.yaml latency.threshold_seconds {threshold} is not a bucket bound of "
            f"sidecar_ and bot_request_duration_seconds {LATENCY_BUCKETS}; the SLI could only be guessed"
        )
    windows: list[Rule] = []
    for window in slo.windows:
        windows.append({"record": sli_name("availability", window), "expr": availability_errors(window)})
        windows.append({"record": sli_name("latency", window), "expr": latency_slow(threshold, window)})
    period = slo.period
    budgets: list[Rule] = [
        {"record": sli_name("availability", period), "expr": availability_errors(period)},
        {"record": sli_name("latency", period), "expr": latency_slow(threshold, period)},
        {
            "record": budget_name("availability"),
            "expr": f"1 - {sli_name('availability', period)} / {number(slo.availability.budget)}",
        },
        {
            "record": budget_name("latency"),
            "expr": f"1 - {sli_name('latency', period)} / {number(slo.latency.budget)}",
        },
    ]
    constants: list[Rule] = [
        {"record": "botwatch:ack_deadline_seconds", "expr": f"vector({number(seconds)})", "labels": {"platform": name}}
        for name, seconds in sorted(slo.ack_deadlines_seconds.items())
    ]
    constants += [
        {"record": "botwatch:memory_limit_bytes", "expr": f"vector({mib * 1024 * 1024})", "labels": {"job": job}}
        for job, mib in sorted(slo.resources.memory_limit_mib.items())
    ]
    return [
        {"name": "botwatch-sli", "rules": windows},
        # Ranges over the whole period are costly; the budget moves slowly, so once a minute is plenty.
        {"name": "botwatch-sli-period", "interval": "1m", "rules": budgets},
        {"name": "botwatch-constants", "interval": "1m", "rules": constants},
    ]


def _burn_alert(slo_name: str, budget: float, alert: BurnRateAlert) -> Rule:
    threshold = number(alert.burn_rate * budget)
    long_sli, short_sli = sli_name(slo_name, alert.long_window), sli_name(slo_name, alert.short_window)
    what = "5xx responses" if slo_name == "availability" else "slow requests"
    return {
        "alert": f"{slo_name.capitalize()}BudgetBurn{alert.long_window}",
        "expr": f"{long_sli} > {threshold} and {short_sli} > {threshold}",
        "for": alert.for_,
        "labels": {
            "severity": alert.severity,
            "slo": slo_name,
            "long_window": alert.long_window,
            "short_window": alert.short_window,
        },
        "annotations": {
            "summary": f"{slo_name} error budget burning at {number(alert.burn_rate)}x or faster",
            "description": (
                f"{what} are using the {slo_name} error budget at {number(alert.burn_rate)} times the "
                f"sustainable rate over both {alert.long_window} and {alert.short_window}; "
                f"{alert.long_window} share now: {{{{ $value | humanizePercentage }}}}."
            ),
            "dashboard": DASHBOARD_SLO,
        },
    }


def alert_rules(slo: SLO) -> list[Rule]:
    """Every alert; each expression is `<signal> <comparison> <threshold>` joined by `and`."""
    rules: list[Rule] = []
    for alert in slo.burn_rate_alerts:
        rules.append(_burn_alert("availability", slo.availability.budget, alert))
    for alert in slo.burn_rate_alerts:
        rules.append(_burn_alert("latency", slo.latency.budget, alert))
    target = number(slo.latency.threshold_seconds)
    quantile = number(slo.latency.objective)
    res = slo.resources
    rej = slo.webhook_rejections
    rules += [
        {
            "alert": "BotDown",
            "expr": 'up{job="bot"} == 0',
            "for": "1m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "bot {{ $labels.instance }} is not answering scrapes",
                "description": "Prometheus has failed to scrape the bot's /metrics for a minute.",
                "dashboard": DASHBOARD_BOT,
            },
        },
        {
            "alert": "SidecarDown",
            "expr": 'up{job="sidecar"} == 0',
            "for": "1m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "sidecar {{ $labels.instance }} is not answering scrapes",
                "description": "Prometheus has failed to scrape the sidecar's admin /metrics for a minute.",
                "dashboard": DASHBOARD_SIDECAR,
            },
        },
        {
            "alert": "SidecarUpstreamDown",
            "expr": "sidecar_upstream_up == 0",
            "for": "30s",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "sidecar {{ $labels.instance }} sees its {{ $labels.upstream }} upstream down",
                "description": "The sidecar's health probe fails, so it answers 503 without calling the bot.",
                "dashboard": DASHBOARD_SIDECAR,
            },
        },
        {
            "alert": "LatencyP99OverTarget",
            "expr": (
                f"histogram_quantile({quantile}, sum by (le, platform) "
                f"(rate(bot_request_duration_seconds_bucket{{{USER_TRAFFIC}}}[5m]))) > {target}"
            ),
            "for": "5m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": f"P{number(slo.latency.objective * 100)} latency of {{{{ $labels.platform }}}} over {target}s",
                "description": "P99 over the last 5 minutes: {{ $value | humanizeDuration }}.",
                "dashboard": DASHBOARD_BOT,
            },
        },
        {
            "alert": "CpuOverTarget",
            "expr": f'rate(process_cpu_seconds_total{{job=~"bot|sidecar"}}[5m]) > {number(res.cpu_max_ratio)}',
            "for": "10m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.job }} {{ $labels.instance }} uses over "
                + f"{number(res.cpu_max_ratio * 100)} % of its core",
                "description": "One event loop per process: past this, latency climbs. Now {{ $value | humanizePercentage }}.",
                "dashboard": DASHBOARD_RESOURCES,
            },
        },
        {
            "alert": "MemoryOverTarget",
            "expr": (
                'process_resident_memory_bytes{job=~"bot|sidecar"} / on (job) group_left '
                f"botwatch:memory_limit_bytes > {number(res.memory_max_ratio)}"
            ),
            "for": "10m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.job }} {{ $labels.instance }} uses over "
                + f"{number(res.memory_max_ratio * 100)} % of its memory limit",
                "description": "Resident memory is {{ $value | humanizePercentage }} of the limit.",
                "dashboard": DASHBOARD_RESOURCES,
            },
        },
        {
            "alert": "DeadLettersGrowing",
            "expr": "sum by (platform) (increase(bot_dead_letters_total[15m])) > 0",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "replies to {{ $labels.platform }} are being given up on",
                "description": "{{ $value }} replies went to the dead-letter store in 15 minutes; list and replay them.",
                "dashboard": DASHBOARD_BOT,
            },
        },
        {
            "alert": "WebhookRejectionsSpiking",
            "expr": (
                "sum by (platform) (rate(bot_webhook_rejected_total[5m])) / sum by (platform) "
                f"(rate(bot_requests_total[5m])) > {number(rej.max_ratio)} and sum by (platform) "
                f"(rate(bot_webhook_rejected_total[5m])) > {number(rej.min_per_second)}"
            ),
            "for": "5m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.platform }} callbacks are being refused",
                "description": "A rotated secret, a skewed clock or someone probing; see rejections by reason.",
                "dashboard": DASHBOARD_BOT,
            },
        },
        {
            "alert": "AckNearDeadline",
            "expr": (
                "histogram_quantile(0.99, sum by (le, platform) (rate(bot_ack_duration_seconds_bucket[5m]))) "
                f"> on (platform) {number(slo.ack_warning_ratio)} * botwatch:ack_deadline_seconds"
            ),
            "for": "5m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.platform }} ACK P99 is past "
                + f"{number(slo.ack_warning_ratio * 100)} % of the platform's deadline",
                "description": "ACK P99 {{ $value | humanizeDuration }}; past the deadline the platform re-sends.",
                "dashboard": DASHBOARD_BOT,
            },
        },
    ]
    rules += connection_alerts(slo)
    return rules


def connection_alerts(slo: SLO) -> list[Rule]:
    """Connections the bot holds (DingTalk Stream, Feishu long connection): down, silent, storming."""
    conn = slo.platform_connections
    return [
        {
            "alert": "PlatformConnectionDown",
            "expr": ("bot_platform_connection_up == 0 unless "
                     "bot_platform_connection_standby == 1"),
            "for": conn.down_for,
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.instance }} has no {{ $labels.platform }} connection",
                "description": (
                    f"No {{{{ $labels.platform }}}} messages reach this bot: its connection has been down for "
                    f"{conn.down_for} and no other replica holds it for it. See reconnects by reason and the log "
                    "line naming the cause (refused credentials pause reconnects)."
                ),
                "dashboard": DASHBOARD_BOT,
            },
        },
        {
            "alert": "PlatformConnectionSilent",
            "expr": (f"time() - bot_platform_last_frame_timestamp_seconds > {number(conn.silent_seconds)} "
                     "and bot_platform_connection_up == 1"),
            "for": "1m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.platform }} connection of {{ $labels.instance }} is open but silent",
                "description": (
                    "Nothing at all (no message, ping or pong) for {{ $value | humanizeDuration }}, yet the "
                    "bot counts the connection as up: its watchdog is not working. Restart the bot."
                ),
                "dashboard": DASHBOARD_BOT,
            },
        },
        {
            "alert": "PlatformReconnectStorm",
            "expr": (f"sum by (platform) (increase(bot_platform_reconnects_total[15m])) > "
                     f"{number(conn.max_reconnects_per_15m)}"),
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.platform }} connections keep dropping",
                "description": (
                    "{{ $value | humanize }} reconnects in 15 minutes; see bot_platform_reconnects_total by reason "
                    "(silent: a network that drops idle connections; closed: the platform ends them)."
                ),
                "dashboard": DASHBOARD_BOT,
            },
        },
    ]


def rule_files(slo: SLO) -> dict[str, dict[str, Any]]:
    """The rule files by name, as Prometheus loads them."""
    return {
        "recording.rules.yml": {"groups": recording_groups(slo)},
        "alerts.rules.yml": {"groups": [{"name": "botwatch-alerts", "rules": alert_rules(slo)}]},
    }
