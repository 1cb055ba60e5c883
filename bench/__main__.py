"""Run every benchmark suite in turn (`make bench`), or the ones named: `python -m bench bot sidecar`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module has `main() -> None`; order: cheapest first.
SUITES = {
    "bot": "the bot alone: chat API throughput and the cost of telemetry",
    "webhooks": "signed platform callbacks: ACK latency against each platform's deadline",
    "sidecar": "the sidecar against nginx in front of the same upstream",
    "slowclients": "1,100 slow-body or slow-header connections from one address: a normal client's 200 share, sidecar and nginx",
    "stream": "streamed answers: time to first event through the sidecar and the bot vs the model's first token",
    "capacity": "the request rate where the stack stops meeting slo.yaml",
    "replies": "platform replies under load (RATE:LATENCY:SECONDS rows): replies/s, reply p50/p99, model calls in flight",
    "soak": "a long steady run watching memory and descriptors (SOAK_SECONDS, default 600; SOAK_RATE, default 40)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks: each prints ratios taken in one run and appends them to bench/results.md.",
        epilog="suites:\n" + "\n".join(f"  {name:<10} {what}" for name, what in SUITES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "suites", nargs="*", metavar="suite",
        help=f"suites to run, in order (default: all of {', '.join(SUITES)})",
    )
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    # RATE:LATENCY:SECONDS arguments belong to the replies suite, which reads them itself.
    names = parser.parse_args([arg for arg in argv if ":" not in arg]).suites or list(SUITES)
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        parser.error(f"invalid choice: {', '.join(unknown)} (choose from {', '.join(SUITES)})")
    for name in names:
        print(f"== bench {name}: {SUITES[name]}", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
