"""Replies: how long users wait for an answer, how much of that is the bot's own doing, and whether the backlog grows."""

from monitoring.panels import RATE, dashboard, quantile, selector, stat, steps, target, targets, timeseries
from monitoring.rules import number
from monitoring.slo import load_slo

slo = load_slo()
reply, overhead, age_max = slo.reply, slo.reply_overhead, slo.queue_age.max_seconds
replies = selector("bot_reply_duration_seconds_bucket")
replies_count = selector("bot_reply_duration_seconds_count")
own = selector("bot_reply_overhead_seconds_bucket")
inst = 'instance=~"$instance"'
fast_replies = selector("bot_reply_duration_seconds_bucket", f'le="{reply.threshold_seconds:.1f}"')
page = slo.burn_rate_alerts[0]


dashboard = dashboard(
    uid="botwatch-replies",
    title="botwatch / Replies",
    description=(
        "From callback received to reply delivered on the platform: what users wait for. The bot's own part "
        "(queue wait, sessions, send) is held to its own objective, whatever the model does."
    ),
    panels=[
        stat(
            f"Replies within {number(reply.threshold_seconds)} s",
            f"Share of replies delivered within the threshold; the objective is {number(reply.objective * 100)} %.",
            [target(f"sum(rate({fast_replies}[{RATE}])) / sum(rate({replies_count}[{RATE}]))", "within")], unit="percentunit",
            thresholds=steps("red", (reply.objective, "green")),
        ),
        stat(
            "Oldest message waiting", f"Age of the oldest message not yet answered; pages past {number(age_max)} s.",
            [target(f"max(bot_queue_oldest_age_seconds{{{inst}}})", "age")], unit="s",
            thresholds=steps("green", (age_max / 2, "orange"), (age_max, "red")),
        ),
        stat(
            "Model calls in flight", "Calls running now, of MODEL_MAX_CONCURRENCY allowed.",
            [target(f"sum(bot_model_requests_in_flight{{{inst}}})", "in flight")],
        ),
        stat(
            "Replies per second", "Replies delivered to the platforms.",
            [target(f"sum(rate({replies_count}[{RATE}]))", "replies/s")], unit="reqps",
        ),
        timeseries(
            "Reply time P50 / P99 by platform",
            f"Callback received to reply delivered. Line: the objective's {number(reply.threshold_seconds)} s.",
            targets(
                (quantile(0.5, replies, "platform"), "{{platform}} p50"),
                (quantile(0.99, replies, "platform"), "{{platform}} p99"),
            ),
            unit="s", thresholds=steps("transparent", (reply.threshold_seconds, "red")),
        ),
        timeseries(
            "The bot's own part P99 by platform",
            f"Reply time less the model call: queue wait, sessions and send. Line: "
            f"{number(overhead.threshold_seconds)} s, the objective for {number(overhead.objective * 100)} % of replies.",
            [target(quantile(0.99, own, "platform"), "{{platform}} p99")],
            unit="s", thresholds=steps("transparent", (overhead.threshold_seconds, "red")),
        ),
        timeseries(
            "Oldest message waiting by instance", "Per instance and queue. It grows when the model allows fewer calls than the "
            "load needs, or the queue store fails.",
            [target(f"max by (instance, queue) (bot_queue_oldest_age_seconds{{{inst}}})", "{{instance}} {{queue}}")],
            unit="s", thresholds=steps("transparent", (age_max, "red")),
        ),
        timeseries(
            "Model calls in flight against the limit",
            "Solid: calls running. Dashed: MODEL_MAX_CONCURRENCY. At the limit, messages wait in the queue.",
            targets(
                (f"sum by (backend) (bot_model_requests_in_flight{{{inst}}})", "{{backend}} in flight"),
                (f"sum by (backend) (bot_model_concurrency_limit{{{inst}}})", "{{backend}} limit"),
            ),
        ),
        timeseries(
            "Reply error budget burn", "Slow share over each alert window divided by the budget; 1 = sustainable.",
            targets(*(
                (f"botwatch:{name}_slow_per_reply:ratio_rate{window} / {number(getattr(slo, name).budget)}",
                 f"{name} {window}")
                for name in ("reply", "reply_overhead") for window in (page.short_window, page.long_window)
            )),
            thresholds=steps("transparent", (1, "orange"), (page.burn_rate, "red")),
        ),
        timeseries(
            "Reply error budget remaining", f"Over {slo.period}.",
            targets(
                ("botwatch:reply_budget_remaining:ratio", "reply"),
                ("botwatch:reply_overhead_budget_remaining:ratio", "bot's own part"),
            ),
            unit="percentunit",
        ),
    ],
)
