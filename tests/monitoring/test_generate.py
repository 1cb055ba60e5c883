"""slo.yaml is the single source: the committed rules and dashboards are exactly what it generates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitoring.generate import generated_files, stale_files
from monitoring.rules import alert_rules, recording_groups
from monitoring.slo import SLO_FILE, load_slo


def test_committed_generated_files_match_the_generator() -> None:
    stale = stale_files(generated_files())
    assert not stale, f"run `make generate` and commit: {[str(p) for p in stale]}"


def test_a_changed_target_changes_the_generated_rules(tmp_path: Path) -> None:
    data = yaml.safe_load(SLO_FILE.read_text(encoding="utf-8"))
    data["availability"]["objective"] = 0.99
    changed = tmp_path / "slo.yaml"
    changed.write_text(yaml.safe_dump(data), encoding="utf-8")
    stale = stale_files(generated_files(changed))
    assert any(p.name == "alerts.rules.yml" for p in stale)
    assert any(p.name == "recording.rules.yml" for p in stale)


def test_burn_rate_thresholds_are_the_budget_times_the_burn_rate() -> None:
    slo = load_slo()
    burns = {r["alert"]: r for r in alert_rules(slo) if "BudgetBurn" in r["alert"]}
    assert burns["AvailabilityBudgetBurn1h"]["expr"].endswith("ratio_rate5m > 0.0144")
    assert burns["AvailabilityBudgetBurn6h"]["labels"] == {
        "severity": "page", "slo": "availability", "long_window": "6h", "short_window": "30m",
    }
    assert burns["LatencyBudgetBurn3d"]["expr"] == (
        "botwatch:latency_slow_per_request:ratio_rate3d > 0.01 and botwatch:latency_slow_per_request:ratio_rate6h > 0.01"
    )
    assert {r["labels"]["severity"] for r in burns.values()} == {"page", "ticket"}


def test_sli_windows_are_exactly_those_the_alerts_read() -> None:
    records = [r["record"] for group in recording_groups(load_slo()) for r in group["rules"]]
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"botwatch:availability_errors_per_request:ratio_rate{window}" in records
        assert f"botwatch:latency_slow_per_request:ratio_rate{window}" in records


def test_a_latency_threshold_between_buckets_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(SLO_FILE.read_text(encoding="utf-8"))
    data["latency"]["threshold_seconds"] = 0.4
    bad = tmp_path / "slo.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SystemExit, match="not a bucket bound"):
        generated_files(bad)


def test_a_malformed_slo_file_names_the_bad_key(tmp_path: Path) -> None:
    data = yaml.safe_load(SLO_FILE.read_text(encoding="utf-8"))
    data["burn_rate_alerts"][0]["short_window"] = "2h"
    bad = tmp_path / "slo.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SystemExit, match="must be shorter than 1h"):
        load_slo(bad)


def test_the_load_test_gates_read_the_same_numbers() -> None:
    data = yaml.safe_load(SLO_FILE.read_text(encoding="utf-8"))
    slo = load_slo()
    assert data["latency"]["threshold_seconds"] == slo.latency.threshold_seconds == 0.5
    assert data["throughput"]["min_rps"] == slo.throughput.min_rps == 50
    assert data["error_rate"]["max_ratio"] == slo.error_rate.max_ratio == 0.001


def test_generate_says_what_it_wrote_and_that_the_rest_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    from monitoring.generate import main

    assert main([]) == 0
    out = capsys.readouterr().out
    count = len(generated_files())
    assert f"all {count} generated files already match" in out, out
    assert "slo.yaml" in out
