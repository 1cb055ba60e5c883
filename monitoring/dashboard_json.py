"""Render the grafanalib sources in dashboards/*.dashboard.py to the JSON Grafana provisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafanalib._gen import DASHBOARD_SUFFIX, DashboardEncoder, loader

from monitoring.slo import ROOT

SOURCES_DIR = ROOT / "dashboards"
# The dashboard schema version of the Grafana these files are provisioned into (@grafana/schema's
# defaultDashboard.schemaVersion, checked by the tests): an older one makes Grafana migrate on every load.
SCHEMA_VERSION = 42
# What grafanalib still writes for the row-based layout Grafana dropped; null means "unset" and goes too.
_LEGACY_DASHBOARD_KEYS = {"rows", "hideControls", "sharedCrosshair", "style", "__inputs", "gnetId", "id"}
_LEGACY_PANEL_KEYS = {"span", "height", "minSpan", "error", "editable"}
_STAT_DEFAULTS = {"percentChangeColorMode": "standard", "showPercentChange": False, "wideLayout": True}
_LEGACY_VARIABLE_KEYS = {"auto", "auto_count", "auto_min", "tagValuesQuery", "tagsQuery", "useTags", "tags"}


def dashboard_sources(directory: Path = SOURCES_DIR) -> list[Path]:
    return sorted(directory.glob(f"*{DASHBOARD_SUFFIX}"))


def render_dashboard(source: Path) -> str:
    """The dashboard JSON for one source file, stable byte for byte."""
    board = json.loads(json.dumps(loader(str(source)).to_json_data(), cls=DashboardEncoder))
    return json.dumps(at_current_schema(board), sort_keys=True, indent=2) + "\n"


def at_current_schema(board: dict[str, Any]) -> dict[str, Any]:
    """The dashboard as Grafana's current schema has it, so loading it changes nothing."""
    board = {k: v for k, v in _without_nulls(board).items() if k not in _LEGACY_DASHBOARD_KEYS}
    board["panels"] = [{k: v for k, v in p.items() if k not in _LEGACY_PANEL_KEYS} for p in board.get("panels", [])]
    for variable in board.get("templating", {}).get("list", []):
        for key in _LEGACY_VARIABLE_KEYS & set(variable):
            del variable[key]
        variable.get("current", {}).pop("tags", None)
    board.get("timepicker", {}).pop("time_options", None)
    for panel in board["panels"]:
        # Grafana's own defaults for what grafanalib leaves out, so nothing is filled in on load.
        options = panel.setdefault("options", {})
        if panel["type"] == "stat":
            for key, default in _STAT_DEFAULTS.items():
                options.setdefault(key, default)
        if panel["type"] == "timeseries":
            legend = options.setdefault("legend", {})
            legend.setdefault("showLegend", legend.get("displayMode") != "hidden")
            options.setdefault("tooltip", {}).setdefault("sort", "none")
    board["schemaVersion"] = SCHEMA_VERSION
    return board


def _without_nulls(value: Any) -> Any:
    """Drop null-valued keys, except a threshold step's `value` (null there is the base step)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None or k == "value"}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def json_name(source: Path) -> str:
    return source.name[: -len(DASHBOARD_SUFFIX)] + ".json"


def dashboard_files(directory: Path = SOURCES_DIR) -> dict[str, str]:
    """Every dashboard's JSON file name and text."""
    return {json_name(source): render_dashboard(source) for source in dashboard_sources(directory)}
