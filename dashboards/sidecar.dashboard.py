"""Sidecar: what reaches the bot, what is turned away (rate limits, shedding), and canary next to stable."""

from monitoring.panels import RATE, dashboard, quantile, ratio_or_zero, stat, steps, target, targets, timeseries
from monitoring.rules import SIDECAR_USER_TRAFFIC, number
from monitoring.slo import load_slo

slo = load_slo()
inst = 'instance=~"$instance"'
requests = f"sidecar_requests_total{{{inst}}}"
requests_5xx = f'sidecar_requests_total{{status=~"5..",{inst}}}'
duration = f"sidecar_request_duration_seconds_bucket{{{inst}}}"

dashboard = dashboard(
    uid="botwatch-sidecar",
    title="botwatch / Sidecar",
    description="The sidecar in front of the bot: traffic by upstream, rate limiting, shedding, probes, canary.",
    platform=False,
    panels=[
        stat("Requests per second", "Everything the sidecar answered but health checks (as the SLO counts).",
             [target(f"sum(rate(sidecar_requests_total{{{SIDECAR_USER_TRAFFIC},{inst}}}[{RATE}]))", "QPS")],
             unit="reqps",
             thresholds=steps("orange", (slo.throughput.min_rps, "green"))),
        stat("Upstreams up", "1 per upstream whose probe passes.",
             [target(f'sum by (upstream) (sidecar_upstream_up{{{inst}}})', "{{upstream}}")],
             thresholds=steps("red", (1, "green"))),
        stat("Rate limited per second", "429s; counted apart, they are not errors of the bot.",
             [target(f"sum(rate(sidecar_ratelimited_total{{{inst}}}[{RATE}]))", "429")], unit="reqps"),
        stat("Shed per second", "503s answered at once instead of queueing.",
             [target(f"sum(rate(sidecar_shed_total{{{inst}}}[{RATE}]))", "shed")], unit="reqps"),
        timeseries("Requests by upstream", "stable and canary side by side.",
                   [target(f"sum by (upstream) (rate({requests}[{RATE}]))", "{{upstream}}")], unit="reqps"),
        timeseries("Responses by status and upstream", "Including the sidecar's own 429s and 503s.",
                   [target(f"sum by (upstream, status) (rate({requests}[{RATE}]))", "{{upstream}} {{status}}")],
                   unit="reqps"),
        timeseries(
            "Error ratio: canary vs stable", f"5xx share per upstream; target under {number(slo.error_rate.max_ratio * 100)} %.",
            [target(ratio_or_zero(f"rate({requests_5xx}[{RATE}])", f"rate({requests}[{RATE}])", "upstream"),
                    "{{upstream}}")],
            unit="percentunit", thresholds=steps("transparent", (slo.error_rate.max_ratio, "red")),
        ),
        timeseries(
            "P99 latency: canary vs stable", f"Target under {number(slo.latency.threshold_seconds)} s.",
            targets((quantile(0.99, duration, "upstream"), "{{upstream}} p99"),
                    (quantile(0.5, duration, "upstream"), "{{upstream}} p50")),
            unit="s", thresholds=steps("transparent", (slo.latency.threshold_seconds, "red")),
        ),
        timeseries("Rate limited by rule", "Refused (429) per rule, and beside them what shadow-mode rules would refuse"
                   " (counted, let through): watch a shadow rule here before enforcing it.",
                   targets((f"sum by (rule) (rate(sidecar_ratelimited_total{{{inst}}}[{RATE}]))", "{{rule}} refused"),
                           (f"sum by (rule) (rate(sidecar_ratelimit_shadow_total{{{inst}}}[{RATE}]))",
                            "{{rule}} shadow (let through)")),
                   unit="reqps"),
        timeseries("Shed by reason", "Too many in flight, or the upstream is down.",
                   [target(f"sum by (reason) (rate(sidecar_shed_total{{{inst}}}[{RATE}]))", "{{reason}}")],
                   unit="reqps"),
        timeseries("Open client connections", "Connections held on the public port, against the global cap"
                   " (SIDECAR_MAX_CONNECTIONS); one address may hold SIDECAR_MAX_CONNECTIONS_PER_CLIENT of them.",
                   [target(f"sum(sidecar_client_connections{{{inst}}})", "open")]),
        timeseries("Connections refused and requests cut off", "Connections refused at a cap, by cap; requests whose"
                   " head or body did not arrive within its deadline, by phase. Either rising: slow or greedy clients.",
                   targets((f"sum by (reason) (rate(sidecar_connections_refused_total{{{inst}}}[{RATE}]))",
                            "refused: {{reason}}"),
                           (f"sum by (phase) (rate(sidecar_client_timeouts_total{{{inst}}}[{RATE}]))",
                            "timed out: {{phase}}")),
                   unit="cps"),
        timeseries("Request bodies held", "Bytes of request bodies read whole before they go upstream; refused past"
                   " SIDECAR_MAX_BUFFERED_BYTES.",
                   [target(f"sum(sidecar_buffered_body_bytes{{{inst}}})", "held")], unit="bytes"),
        timeseries("Upstream failures by kind", "Proxied requests that failed at the upstream (refused, reset,"
                   " timed out, bad response); rate-limit checks skipped because the shared store failed.",
                   targets((f"sum by (upstream, kind) (rate(sidecar_upstream_errors_total{{{inst}}}[{RATE}]))",
                            "{{upstream}} {{kind}}"),
                           (f"sum(rate(sidecar_ratelimit_errors_total{{{inst}}}[{RATE}]))", "rate-limit store")),
                   unit="reqps"),
        timeseries("Upstream up", "The probe's verdict per upstream.",
                   [target(f"sidecar_upstream_up{{{inst}}}", "{{instance}} {{upstream}}")]),
        timeseries(
            "Probes", "Probe latency and results per upstream.",
            targets((quantile(0.99, f"sidecar_probe_duration_seconds_bucket{{{inst}}}", "upstream"),
                     "{{upstream}} probe p99"),
                    (f"sum by (upstream, result) (rate(sidecar_probes_total{{{inst}}}[{RATE}]))",
                     "{{upstream}} {{result}}/s")),
            unit="s",
        ),
    ],
)
