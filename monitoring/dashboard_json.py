"""Render the grafanalib sources in dashboards/*.dashboard.py to the JSON Grafana provisions."""

from __future__ import annotations

import json
from pathlib import Path

from grafanalib._gen import DASHBOARD_SUFFIX, DashboardEncoder, loader

from monitoring.slo import ROOT

SOURCES_DIR = ROOT / "dashboards"


def dashboard_sources(directory: Path = SOURCES_DIR) -> list[Path]:
    return sorted(directory.glob(f"*{DASHBOARD_SUFFIX}"))


def render_dashboard(source: Path) -> str:
    """The dashboard JSON for one source file, stable byte for byte."""
    board = loader(str(source))
    return json.dumps(board.to_json_data(), sort_keys=True, indent=2, cls=DashboardEncoder) + "\n"


def json_name(source: Path) -> str:
    return source.name[: -len(DASHBOARD_SUFFIX)] + ".json"


def dashboard_files(directory: Path = SOURCES_DIR) -> dict[str, str]:
    """Every dashboard's JSON file name and text."""
    return {json_name(source): render_dashboard(source) for source in dashboard_sources(directory)}
