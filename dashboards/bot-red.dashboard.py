"""Bot RED: is the bot answering, how fast, how often wrongly, and is each platform inside its ACK deadline?"""

from monitoring.panels import (
    RATE,
    dashboard,
    quantile,
    ratio_or_zero,
    selector,
    stat,
    steps,
    target,
    targets,
    timeseries,
)
from monitoring.rules import USER_TRAFFIC, number
from monitoring.slo import load_slo

slo = load_slo()
latency_target = slo.latency.threshold_seconds
# Users' traffic, as the SLO rules count it: the bot's own health checks and scrapes left out.
requests = selector("bot_requests_total", USER_TRAFFIC)
requests_5xx = selector("bot_requests_total", USER_TRAFFIC, 'status=~"5.."')
all_requests = selector("bot_requests_total")
duration = selector("bot_request_duration_seconds_bucket", USER_TRAFFIC)
all_duration = selector("bot_request_duration_seconds_bucket")
inst = 'instance=~"$instance"'
# The promise of streamed answers: the first words within a second.
FIRST_WORDS_GOAL = 1.0

dashboard = dashboard(
    uid="botwatch-bot-red",
    title="botwatch / Bot RED",
    description="Rate, errors and duration of the bot, per platform; ACK latency against each platform's deadline.",
    panels=[
        stat(
            "Requests per second", f"Users' requests on all platforms (health checks and scrapes left out); the load-test floor is "
            f"{number(slo.throughput.min_rps)} QPS.",
            [target(f"sum(rate({requests}[{RATE}]))", "QPS")], unit="reqps",
            thresholds=steps("orange", (slo.throughput.min_rps, "green")),
        ),
        stat(
            "Error ratio (5xx)", f"Share of 5xx answers; the target is under {number(slo.error_rate.max_ratio * 100)} %.",
            [target(f"(sum(rate({requests_5xx}[{RATE}])) or vector(0)) / sum(rate({requests}[{RATE}]))", "5xx")],
            unit="percentunit", thresholds=steps("green", (slo.error_rate.max_ratio, "red")),
        ),
        stat(
            "P99 latency", f"Target: under {number(latency_target)} s.",
            [target(quantile(0.99, duration), "p99", exemplar=True)], unit="s",
            thresholds=steps("green", (latency_target, "red")),
        ),
        stat("In flight", "Requests being handled right now.",
             [target('sum(bot_requests_in_flight{instance=~"$instance"})', "in flight")]),
        timeseries(
            "QPS by platform", "The guides' query, filtered by the variables above; the bot's own health checks and scrapes "
            "(platform=\"system\") left out, as the SLO rules do.",
            [target(f"sum by (platform) (rate({requests}[{RATE}]))", "{{platform}}")], unit="reqps",
            thresholds=steps("transparent", (slo.throughput.min_rps, "green")),
        ),
        timeseries(
            "Responses by status", "Per status code, health checks and scrapes included; 4xx are the callers' "
            "mistakes, 5xx are ours, 499 callers that hung up.",
            [target(f"sum by (status) (rate({all_requests}[{RATE}]))", "{{status}}")], unit="reqps",
        ),
        timeseries(
            "Error ratio by platform", "5xx share per platform.",
            [target(ratio_or_zero(f"rate({requests_5xx}[{RATE}])", f"rate({requests}[{RATE}])", "platform"),
                    "{{platform}}")],
            unit="percentunit", thresholds=steps("transparent", (slo.error_rate.max_ratio, "red")),
        ),
        timeseries(
            "Latency p50 / p95 / p99", "Exemplars link a slow request to its trace id.",
            targets(
                (quantile(0.5, duration), "p50"), (quantile(0.95, duration), "p95"), (quantile(0.99, duration), "p99"),
                exemplar=True,
            ),
            unit="s", thresholds=steps("transparent", (latency_target, "red")),
        ),
        timeseries(
            "P99 latency by route", "Which route is slow (health checks and scrapes included).",
            [target(quantile(0.99, all_duration, "platform, route"), "{{platform}} {{route}}", exemplar=True)], unit="s",
            thresholds=steps("transparent", (latency_target, "red")),
        ),
        timeseries(
            "ACK latency P99 against the platform's deadline",
            f"Solid: ACK P99 per platform. Dashed: each platform's deadline; the alert fires at "
            f"{number(slo.ack_warning_ratio * 100)} % of it.",
            targets(
                (quantile(0.99, selector("bot_ack_duration_seconds_bucket"), "platform"), "{{platform}} ack p99"),
                ('botwatch:ack_deadline_seconds{platform=~"$platform"}', "{{platform}} deadline"),
            ),
            unit="s",
        ),
        timeseries(
            "Webhook rejections by reason", "Bad signatures, stale timestamps, wrong tokens, denied IPs, bad bodies.",
            [target(f"sum by (platform, reason) (rate({selector('bot_webhook_rejected_total')}[{RATE}]))",
                    "{{platform}} {{reason}}")],
            unit="reqps",
        ),
        timeseries(
            "Duplicate callbacks", "Platform re-deliveries recognised and acknowledged without a second answer.",
            [target(f"sum by (platform) (rate({selector('bot_duplicates_total')}[{RATE}]))", "{{platform}}")],
            unit="reqps",
        ),
        timeseries(
            "Reply time P99", "From callback received to reply delivered on the platform.",
            [target(quantile(0.99, selector("bot_reply_duration_seconds_bucket"), "platform"), "{{platform}}")],
            unit="s",
        ),
        timeseries(
            "Model latency", "Model calls, retries included.",
            targets(
                (quantile(0.5, f"bot_model_duration_seconds_bucket{{{inst}}}", "backend"), "{{backend}} p50"),
                (quantile(0.99, f"bot_model_duration_seconds_bucket{{{inst}}}", "backend"), "{{backend}} p99"),
                exemplar=True,
            ),
            unit="s", thresholds=steps("transparent", (latency_target, "red")),
        ),
        timeseries(
            "Time to first token (streamed answers)",
            "Streamed answers: request received to first words sent, per platform (api is the chat API), beside "
            "the model's own first token; the gap is what the bot adds.",
            targets(
                (quantile(0.5, selector("bot_first_token_seconds_bucket"), "platform"), "{{platform}} p50"),
                (quantile(0.99, selector("bot_first_token_seconds_bucket"), "platform"), "{{platform}} p99"),
                (quantile(0.5, f"bot_model_first_token_seconds_bucket{{{inst}}}", "backend"), "model {{backend}} p50"),
                (quantile(0.99, f"bot_model_first_token_seconds_bucket{{{inst}}}", "backend"), "model {{backend}} p99"),
            ),
            unit="s", thresholds=steps("transparent", (FIRST_WORDS_GOAL, "red")),
        ),
        timeseries(
            "Model calls by outcome", "success, or the error code the caller saw.",
            [target(f"sum by (backend, outcome) (rate(bot_model_requests_total{{{inst}}}[{RATE}]))",
                    "{{backend}} {{outcome}}")],
            unit="reqps",
        ),
        timeseries(
            "Model tokens", "Tokens per second by kind.",
            [target(f"sum by (backend, kind) (rate(bot_model_tokens_total{{{inst}}}[{RATE}]))",
                    "{{backend}} {{kind}}")],
        ),
        timeseries(
            "Queue depth", "Messages accepted and waiting for a free model slot, and replies waiting to be delivered.",
            [target(f"sum by (queue) (bot_queue_depth{{{inst}}})", "{{queue}}")],
        ),
        timeseries(
            "Delivery attempts and dead letters", "Replies sent by outcome; dead letters need an operator.",
            targets(
                (f"sum by (platform, outcome) (rate({selector('bot_delivery_attempts_total')}[{RATE}]))",
                 "{{platform}} {{outcome}}"),
                (f"sum by (platform) (increase({selector('bot_dead_letters_total')}[{RATE}]))",
                 "{{platform}} dead letters"),
            ),
        ),
        timeseries(
            "Platform connections",
            "DingTalk Stream and Feishu long connections held by the bot: 1 up, 0 down; 'standby' is a replica "
            "waiting while another holds the connection.",
            targets(
                (f"max by (platform, instance) ({selector('bot_platform_connection_up')})",
                 "{{platform}} up {{instance}}"),
                (f"max by (platform, instance) ({selector('bot_platform_connection_standby')})",
                 "{{platform}} standby {{instance}}"),
            ),
        ),
        timeseries(
            "Time since the last frame",
            "Seconds since anything (message, ping, pong) arrived on the connection. The bot's watchdog "
            "reconnects past its own bound (DINGTALK_ or FEISHU_SILENCE_SECONDS); the alert fires past "
            f"{number(slo.platform_connections.silent_seconds)} s.",
            [target(f"time() - max by (platform, instance) "
                    f"({selector('bot_platform_last_frame_timestamp_seconds')})", "{{platform}} {{instance}}")],
            unit="s", thresholds=steps("transparent", (slo.platform_connections.silent_seconds, "red")),
        ),
        timeseries(
            "Reconnects by reason",
            "silent: the watchdog heard nothing; closed: the platform or network ended it; disconnect: the "
            "platform asked to move; unreachable / refused: opening failed (refused pauses reconnects).",
            [target(f"sum by (platform, reason) (increase({selector('bot_platform_reconnects_total')}[{RATE}]))",
                    "{{platform}} {{reason}}")],
        ),
    ],
)
