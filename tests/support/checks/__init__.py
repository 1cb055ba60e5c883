"""Checks for the files of servers that cannot run here (Logstash, Elasticsearch, Kibana, Grafana,
Docker). Each check reads a file with the vendor's own grammar, types or schema where one is
installable, and returns problems as `path: what is wrong` lines, so a failing test names the file."""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import ROOT

DATA = Path(__file__).resolve().parent


def shown(path: Path) -> str:
    """The path as a reader of the repository knows it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
