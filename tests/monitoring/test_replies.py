"""The reply objectives in slo.yaml become recording rules, burn-rate and queue-age alerts, and the Replies
dashboard's thresholds; the promtool cases in prometheus/tests/replies.test.yml prove what fires."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from monitoring import replies
from monitoring.generate import generated_files
from monitoring.slo import SLO_FILE, load_slo


def _changed_slo(tmp_path: Path, **changes: dict[str, object]) -> Path:
    data = yaml.safe_load(SLO_FILE.read_text(encoding="utf-8"))
    for key, values in changes.items():
        data[key].update(values)
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _panel(files: dict[Path, str], title: str) -> dict[str, object]:
    board = json.loads(next(text for path, text in files.items() if path.name == "replies.json"))
    return next(p for p in board["panels"] if p["title"] == title)


def test_reply_slis_read_the_bucket_at_each_threshold() -> None:
    slo = load_slo()
    records = {r["record"]: r["expr"] for g in replies.recording_groups(slo) for r in g["rules"]}
    assert records["botwatch:reply_slow_per_reply:ratio_rate1h"] == (
        '1 - (sum(rate(bot_reply_duration_seconds_bucket{le="10.0"}[1h])) / sum(rate(bot_reply_duration_seconds_count[1h])))'
    )
    assert 'bot_reply_overhead_seconds_bucket{le="1.0"}[5m]' in records[
        "botwatch:reply_overhead_slow_per_reply:ratio_rate5m"
    ]
    assert records["botwatch:reply_budget_remaining:ratio"] == "1 - botwatch:reply_slow_per_reply:ratio_rate30d / 0.01"


def test_every_burn_window_alerts_for_both_reply_objectives_at_its_rate_times_the_budget() -> None:
    slo = load_slo()
    alerts = {r["alert"]: r for r in replies.alert_rules(slo)}
    assert alerts["ReplyBudgetBurn1h"]["expr"] == (
        "botwatch:reply_slow_per_reply:ratio_rate1h > 0.144 and botwatch:reply_slow_per_reply:ratio_rate5m > 0.144"
    )
    assert alerts["ReplyOverheadBudgetBurn3d"]["labels"] == {
        "severity": "ticket", "slo": "reply_overhead", "long_window": "3d", "short_window": "6h",
    }
    assert alerts["QueueBacklogAging"]["expr"] == "max by (instance, queue) (bot_queue_oldest_age_seconds) > 30"
    assert alerts["QueueBacklogAging"]["for"] == "2m"


def test_a_reply_threshold_between_buckets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="reply.threshold_seconds 4.0 is not a bucket bound"):
        generated_files(_changed_slo(tmp_path, reply={"threshold_seconds": 4}))


def test_changed_reply_targets_move_the_rules_and_the_dashboard_thresholds(tmp_path: Path) -> None:
    files = generated_files(_changed_slo(
        tmp_path, reply={"threshold_seconds": 30}, reply_overhead={"threshold_seconds": 2.5},
        queue_age={"max_seconds": 60},
    ))
    rules = next(text for path, text in files.items() if path.name == "replies.rules.yml")
    assert 'bot_reply_duration_seconds_bucket{le="30.0"}' in rules
    assert 'bot_reply_overhead_seconds_bucket{le="2.5"}' in rules
    assert "(bot_queue_oldest_age_seconds) > 60" in rules

    def steps(title: str) -> list[float]:
        panel = _panel(files, title)
        return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None]

    assert steps("Reply time P50 / P99 by platform") == [30.0]
    assert steps("The bot's own part P99 by platform") == [2.5]
    assert steps("Oldest message waiting by instance") == [60.0]
    assert steps("Oldest message waiting") == [30.0, 60.0]
