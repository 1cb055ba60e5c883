"""Locust suites for botwatch and the gates, read from slo.yaml, that judge each run."""
