"""Run every benchmark suite in turn (`make bench`), or the ones named: `python -m bench bot sidecar`."""

from __future__ import annotations

import importlib
import sys

# Each module has `main() -> None`; order: cheapest first. The soak takes SOAK_SECONDS (default 600).
SUITES = ["bot", "webhooks", "sidecar", "slowclients", "capacity", "soak"]


def main(argv: list[str]) -> int:
    for name in argv or SUITES:
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
