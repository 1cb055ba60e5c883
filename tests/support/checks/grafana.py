"""Grafana dashboards type-checked by tsc against @grafana/schema's Dashboard (the package Grafana
itself publishes, pinned in package.json at the same version as the Grafana image in .env)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.checks.typescript import NODE_MODULES, TypedFile, require_tsc, typecheck
from tests.support.processes import ROOT

# JSON has no enum identities: a TS string enum is checked as the union of its values, everything
# else as declared (so unknown keys, wrong value types and unknown enum values all fail). The panel
# types the dashboards use have their options typed by their own panel schema; other core panel
# types are checked as generic panels, and a type Grafana does not ship fails.
_PANELCFG = "@grafana/schema/dist/esm/raw/composable"
OTHER_PANEL_TYPES = (
    "annotationslist", "barchart", "bargauge", "candlestick", "canvas", "dashlist", "gauge", "geomap", "heatmap",
    "histogram", "logs", "news", "nodeGraph", "piechart", "state-timeline", "status-history", "table", "text",
    "trend", "xychart",
)
GRAFANA_TYPES = f"""import type {{ Dashboard, Panel, RowPanel }} from "@grafana/schema";
import type * as stat from "{_PANELCFG}/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as timeseries from "{_PANELCFG}/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";
type Json<T> = T extends string ? `${{T}}` : T extends number ? T : T extends (infer U)[] ? Json<U>[]
  : T extends object ? {{ [K in keyof T]: Json<T[K]> }} : T;
type StatPanel = Omit<Panel, "type" | "options"> & {{ type: "stat"; options: stat.Options }};
type TimeSeriesPanel = Omit<Panel<timeseries.Options, timeseries.FieldConfig>, "type" | "options">
  & {{ type: "timeseries"; options: timeseries.Options }};
type OtherPanel = Omit<Panel, "type"> & {{ type: {" | ".join(f'"{t}"' for t in OTHER_PANEL_TYPES)} }};
type Board = Omit<Dashboard, "panels"> & {{ panels?: Array<StatPanel | TimeSeriesPanel | OtherPanel | RowPanel> }};"""


def schema_package_version() -> str:
    require_tsc()
    return str(json.loads((NODE_MODULES / "@grafana" / "schema" / "package.json").read_text(encoding="utf-8"))["version"])


def current_schema_version() -> int:
    """`defaultDashboard.schemaVersion` as @grafana/schema exports it, read by node from the package."""
    require_tsc()
    script = "import('@grafana/schema').then(m => console.log(m.defaultDashboard.schemaVersion))"
    result = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    return int(result.stdout.strip())


def typecheck_dashboards(paths: list[Path], workdir: Path) -> list[str]:
    files = [TypedFile(p, json.loads(p.read_text(encoding="utf-8")), GRAFANA_TYPES, "Json<Board>") for p in paths]
    return typecheck(files, workdir)


def check_schema_versions(paths: list[Path], expected: int) -> list[str]:
    problems = []
    for path in paths:
        version = json.loads(path.read_text(encoding="utf-8")).get("schemaVersion")
        if version != expected:
            problems.append(f"{path}: schemaVersion {version}, not the current {expected}: Grafana would migrate it on every load")
    return problems
