"""Resources: CPU and memory of the bot and the sidecar against the guides' 70 % / 80 % lines."""

from monitoring.panels import RATE, dashboard, steps, target, timeseries
from monitoring.rules import number
from monitoring.slo import load_slo

slo = load_slo()
res = slo.resources
processes = 'job=~"bot|sidecar",instance=~"$instance"'

dashboard = dashboard(
    uid="botwatch-resources",
    title="botwatch / Resources",
    description="Process CPU (share of one core) and memory (share of the configured limit), open files.",
    platform=False,
    panels=[
        timeseries(
            "CPU (share of one core)",
            f"Each process runs one event loop, so one core is its ceiling; the line is {number(res.cpu_max_ratio * 100)} %.",
            [target(f"rate(process_cpu_seconds_total{{{processes}}}[{RATE}])", "{{job}} {{instance}}")],
            unit="percentunit", thresholds=steps("transparent", (res.cpu_max_ratio, "red")),
        ),
        timeseries(
            "Memory (share of the limit)",
            f"Resident memory over the limit in slo.yaml; the line is {number(res.memory_max_ratio * 100)} %.",
            [target(f"process_resident_memory_bytes{{{processes}}} / on (job) group_left botwatch:memory_limit_bytes",
                    "{{job}} {{instance}}")],
            unit="percentunit", thresholds=steps("transparent", (res.memory_max_ratio, "red")),
        ),
        timeseries(
            "Resident memory", "Bytes, with each process's limit.",
            [target(f"process_resident_memory_bytes{{{processes}}}", "{{job}} {{instance}}"),
             target('botwatch:memory_limit_bytes{job=~"bot|sidecar"}', "{{job}} limit", ref="B")],
            unit="bytes",
        ),
        timeseries(
            "Open files (share of the limit)", "File descriptors in use over the process's limit.",
            [target(f"process_open_fds{{{processes}}} / process_max_fds{{{processes}}}", "{{job}} {{instance}}")],
            unit="percentunit", thresholds=steps("transparent", (0.8, "red")),
        ),
    ],
)
