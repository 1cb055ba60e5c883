"""Building blocks shared by the dashboards/*.dashboard.py sources: variables, selectors, panels, layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attr
from grafanalib.core import Dashboard, GridPos, Stat, Target, Template, Templating, Time, TimeSeries

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana picks a range at least four scrapes wide, so rate() never sees a single sample.
RATE = "$__rate_interval"
PLATFORM_MATCH = 'platform=~"$platform"'
INSTANCE_MATCH = 'instance=~"$instance"'
_WIDTH = 24


@attr.s
class PromTarget(Target):  # type: ignore[misc]
    """A Prometheus target; grafanalib's Target has no `exemplar` field, so it is added here."""

    exemplar: bool = attr.ib(default=False)

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = super().to_json_data()
        data["exemplar"] = self.exemplar
        # `query` and `target` belong to other data sources; Prometheus reads `expr` alone.
        data.pop("query", None)
        data.pop("target", None)
        return data


def target(expr: str, legend: str = "", *, exemplar: bool = False, ref: str = "A") -> PromTarget:
    # The fields come from grafanalib's untyped Target, which mypy's attrs support cannot see.
    return PromTarget(  # type: ignore[call-arg]
        expr=expr, legendFormat=legend, refId=ref, datasource=DATASOURCE, exemplar=exemplar
    )


def targets(*pairs: tuple[str, str], exemplar: bool = False) -> list[PromTarget]:
    """Several (expr, legend) targets with refIds A, B, C..."""
    return [target(expr, legend, exemplar=exemplar, ref=chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def selector(metric: str, *matchers: str, platform: bool = True) -> str:
    """`metric{...}` filtered by the dashboard's instance (and platform) variables."""
    parts = [*matchers, *((PLATFORM_MATCH,) if platform else ()), INSTANCE_MATCH]
    return f"{metric}{{{','.join(parts)}}}"


def quantile(q: float, bucket_selector: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q:g}, sum by ({group}) (rate({bucket_selector}[{RATE}])))"


def ratio_or_zero(errors: str, total: str, by: str) -> str:
    """errors / total per group, 0 (not absent) for groups that have no errors yet."""
    return f"(sum by ({by}) ({errors}) or sum by ({by}) ({total}) * 0) / sum by ({by}) ({total})"


def steps(base: str, *bounds: tuple[float, str]) -> list[dict[str, Any]]:
    """Threshold steps: `base` colour below the first bound, then each colour from its bound up."""
    return [{"color": base, "value": None}, *({"color": colour, "value": value} for value, colour in bounds)]


def template_variables(*, platform: bool = True) -> Templating:
    """datasource / platform / instance, as every dashboard offers them."""
    variables = [
        Template(name="datasource", label="Data source", type="datasource", query="prometheus", default="Prometheus"),
    ]
    if platform:
        variables.append(
            Template(
                name="platform", label="Platform", query="label_values(bot_requests_total, platform)",
                dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".*", default="$__all", refresh=2,
            )
        )
    variables.append(
        Template(
            name="instance", label="Instance", query='label_values(up{job=~"bot|sidecar"}, instance)',
            dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".*", default="$__all", refresh=2,
        )
    )
    return Templating(list=variables)


def timeseries(
    title: str,
    description: str,
    panel_targets: Sequence[PromTarget],
    *,
    unit: str = "short",
    thresholds: list[dict[str, Any]] | None = None,
    width: int = 12,
) -> TimeSeries:
    return TimeSeries(
        title=title, description=description, dataSource=DATASOURCE, targets=list(panel_targets), unit=unit,
        thresholds=thresholds or steps("green"), thresholdsStyleMode="line" if thresholds else "off",
        gridPos=GridPos(h=8, w=width, x=0, y=0), legendDisplayMode="list",
    )


def stat(
    title: str,
    description: str,
    panel_targets: Sequence[PromTarget],
    *,
    unit: str = "short",
    thresholds: list[dict[str, Any]] | None = None,
    width: int = 6,
) -> Stat:
    return Stat(
        title=title, description=description, dataSource=DATASOURCE, targets=list(panel_targets), format=unit,
        thresholds=thresholds or steps("green"), gridPos=GridPos(h=6, w=width, x=0, y=0),
        reduceCalc="lastNotNull", graphMode="area",
    )


def layout(panels: Sequence[Any]) -> list[Any]:
    """Flow panels left to right, wrapping at the grid's 24 columns."""
    placed, x, y, row_height = [], 0, 0, 0
    for panel in panels:
        pos = panel.gridPos
        if x + pos.w > _WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append(attr.evolve(panel, gridPos=GridPos(h=pos.h, w=pos.w, x=x, y=y)))
        x, row_height = x + pos.w, max(row_height, pos.h)
    return placed


def dashboard(uid: str, title: str, description: str, panels: Sequence[Any], *, platform: bool = True) -> Dashboard:
    return Dashboard(
        title=title, uid=uid, description=description, tags=["botwatch"], timezone="browser",
        refresh="10s", time=Time("now-1h", "now"), templating=template_variables(platform=platform),
        panels=layout(panels),
    ).auto_panel_ids()
