"""SLO: how much error budget is left, how fast it burns per window, and the latency SLI."""

from monitoring.panels import dashboard, quantile, stat, steps, target, targets, timeseries
from monitoring.rules import SIDECAR_USER_TRAFFIC, USER_TRAFFIC, budget_name, number, sli_name
from monitoring.slo import load_slo

slo = load_slo()
objectives = {"availability": slo.availability.objective, "latency": slo.latency.objective}
budgets = {"availability": slo.availability.budget, "latency": slo.latency.budget}
burn_bounds = sorted({a.burn_rate for a in slo.burn_rate_alerts})
burn_colours = ["yellow", "orange", "red", "purple"]
burn_steps = steps("green", *zip(burn_bounds, burn_colours))


def burn_panel(kind: str):
    return timeseries(
        f"{kind.capitalize()} burn rate per window",
        "1 spends exactly the budget over the period; the alert thresholds are the coloured lines "
        + ", ".join(f"{number(a.burn_rate)}x over {a.long_window}/{a.short_window} ({a.severity})"
                    for a in slo.burn_rate_alerts) + ".",
        targets(*((f"{sli_name(kind, w)} / {number(budgets[kind])}", w) for w in slo.windows)),
        thresholds=burn_steps, width=12,
    )


dashboard = dashboard(
    uid="botwatch-slo",
    title="botwatch / SLO",
    description=f"Error budgets over {slo.period}, burn rates and SLIs; every number comes from slo.yaml.",
    platform=False,
    panels=[
        stat(f"Availability budget left ({slo.period})",
             f"Objective {number(slo.availability.objective * 100)} % of requests without a 5xx.",
             [target(budget_name("availability"), "left")], unit="percentunit",
             thresholds=steps("red", (0.25, "orange"), (0.5, "green"))),
        stat(f"Latency budget left ({slo.period})",
             f"Objective {number(slo.latency.objective * 100)} % of requests under "
             f"{number(slo.latency.threshold_seconds)} s.",
             [target(budget_name("latency"), "left")], unit="percentunit",
             thresholds=steps("red", (0.25, "orange"), (0.5, "green"))),
        stat("Availability now (5m)", "Share of requests answered without a 5xx.",
             [target(f"1 - {sli_name('availability', '5m')}", "5m")], unit="percentunit",
             thresholds=steps("red", (slo.availability.objective, "green"))),
        stat("Latency SLI now (5m)", f"Share of requests under {number(slo.latency.threshold_seconds)} s.",
             [target(f"1 - {sli_name('latency', '5m')}", "5m")], unit="percentunit",
             thresholds=steps("red", (slo.latency.objective, "green"))),
        burn_panel("availability"),
        burn_panel("latency"),
        timeseries(
            "Availability SLI", f"Objective {number(slo.availability.objective * 100)} %.",
            targets(*((f"1 - {sli_name('availability', w)}", w) for w in ("5m", "1h", slo.period))),
            unit="percentunit", thresholds=steps("red", (objectives["availability"], "transparent")),
        ),
        timeseries(
            "Latency SLI", f"Share of requests under {number(slo.latency.threshold_seconds)} s; "
            f"objective {number(slo.latency.objective * 100)} %.",
            targets(*((f"1 - {sli_name('latency', w)}", w) for w in ("5m", "1h", slo.period))),
            unit="percentunit", thresholds=steps("red", (objectives["latency"], "transparent")),
        ),
        timeseries(
            "P99 latency: at the edge vs in the bot",
            "The latency SLI is read at the sidecar, which clients pass through; the bot's histogram starts "
            "when its handler runs. A gap between the two is time spent waiting for the bot (its socket "
            "backlog past the knee).",
            targets(
                (quantile(0.99, f'sidecar_request_duration_seconds_bucket{{{SIDECAR_USER_TRAFFIC},instance=~"$instance"}}'),
                 "sidecar (SLI)"),
                (quantile(0.99, f'bot_request_duration_seconds_bucket{{{USER_TRAFFIC},instance=~"$instance"}}'),
                 "bot handler"),
            ),
            unit="s", thresholds=steps("transparent", (slo.latency.threshold_seconds, "red")), width=24,
        ),
    ],
)
