"""Turn an Alertmanager webhook payload into one short message for an IM group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.errors import PayloadInvalid

MAX_ALERTS_SHOWN = 10


@dataclass(frozen=True)
class AlertDigest:
    title: str
    markdown: str
    firing: int
    resolved: int
    severity: str


def _text(value: Any, limit: int = 300) -> str:
    text = str(value) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _alert_line(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    name = _text(labels.get("alertname", "alert"), 80)
    summary = _text(annotations.get("summary") or annotations.get("description") or "", 300)
    where = ", ".join(f"{key}={_text(labels[key], 40)}" for key in ("platform", "upstream", "instance") if key in labels)
    since = _text(alert.get("startsAt", ""), 20).replace("T", " ")[:16]
    parts = [f"- **{name}**"]
    if where:
        parts.append(f" ({where})")
    if summary:
        parts.append(f": {summary}")
    if since:
        parts.append(f" · since {since} UTC")
    return "".join(parts)


def digest(payload: dict[str, Any]) -> AlertDigest:
    """Firing alerts first, then resolved ones; a long group is cut with a count of the rest."""
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts) or not alerts:
        raise PayloadInvalid("alerts must be a non-empty list of objects")
    firing = [a for a in alerts if a.get("status") == "firing"]
    resolved = [a for a in alerts if a.get("status") == "resolved"]
    common = payload.get("commonLabels") or {}
    group = payload.get("groupLabels") or {}
    names = {str((a.get("labels") or {}).get("alertname", "")) for a in alerts}
    shared = names.pop() if len(names) == 1 else ""
    name = _text(group.get("alertname") or common.get("alertname") or shared or "alerts", 80)
    severity = _text(common.get("severity") or ("page" if payload.get("receiver") == "page" else ""), 20)
    status = "FIRING" if firing else "RESOLVED"
    title = f"[{status}:{len(firing) or len(resolved)}] {name}" + (f" ({severity})" if severity else "")
    lines = [f"### {title}"]
    for heading, group_alerts in (("Firing", firing), ("Resolved", resolved)):
        if not group_alerts:
            continue
        lines.append(f"**{heading}**")
        lines.extend(_alert_line(alert) for alert in group_alerts[:MAX_ALERTS_SHOWN])
        if len(group_alerts) > MAX_ALERTS_SHOWN:
            lines.append(f"- … and {len(group_alerts) - MAX_ALERTS_SHOWN} more")
    external = payload.get("externalURL")
    if isinstance(external, str) and external.startswith(("http://", "https://")):
        lines.append(f"[Alertmanager]({_text(external, 200)})")
    return AlertDigest(title, "\n".join(lines), len(firing), len(resolved), severity or "none")
