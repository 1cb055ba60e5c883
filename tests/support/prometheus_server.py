"""A real Prometheus on a free port, running the committed config and rules against local targets."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port
from tests.support.processes import ROOT, Process

PROMETHEUS_DIR = ROOT / "prometheus"


def local_config(targets: dict[str, list[str]], interval: str = "1s") -> dict[str, Any]:
    """The committed prometheus.yml with its targets replaced and its intervals shortened.

    Jobs keep their names and paths, so rules that select `job="bot"` mean what they mean in
    production; alerting is dropped because no Alertmanager runs here.
    """
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config.pop("alerting", None)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets.get(job["job_name"], [])}]
    return config


class PrometheusServer:
    """`prometheus` scraping `targets` (job name -> host:port list) and itself, with the committed
    config and copies of the committed rule files written to `workdir`."""

    def __init__(self, binary: str, workdir: Path, targets: dict[str, list[str]], interval: str = "1s") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = local_config({**targets, "prometheus": [f"127.0.0.1:{self.port}"]}, interval)
        self.workdir = workdir
        (workdir / "rules").mkdir(parents=True, exist_ok=True)
        for source in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
            rules = yaml.safe_load(source.read_text(encoding="utf-8"))
            # Groups that run once a minute in production would not run at all in a short test.
            for group in rules["groups"]:
                group["interval"] = interval
            (workdir / "rules" / source.name).write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self._binary = binary
        self.process: Process | None = None

    def start(self) -> None:
        argv = [
            self._binary, f"--config.file={self.config_file}", f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]
        self.process = Process(f"prometheus-{self.port}", argv, {}, self.workdir)
        self.process.wait_http(self.url + "/-/ready", timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET an HTTP API path; Prometheus answers errors (a 400 for a bad query) as JSON too."""
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query's whole answer: `status`, and `data` or `error`."""
        return self.api("/api/v1/query", query=expr)

    def series(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query that must parse."""
        answer = self.query(expr)
        if answer["status"] != "success":
            raise AssertionError(f"{expr!r} failed: {answer.get('errorType')}: {answer.get('error')}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def targets_up(self) -> dict[str, str]:
        """Each active target's scrape URL and health."""
        active = self.api("/api/v1/targets", state="active")["data"]["activeTargets"]
        return {t["scrapeUrl"]: t["health"] for t in active}
