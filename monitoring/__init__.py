"""Monitoring as code: slo.yaml turned into Prometheus rules, Grafana dashboards and ELK set-up."""
