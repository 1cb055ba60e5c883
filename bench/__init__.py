"""`make bench`: benchmarks that print ratios measured in one run on one machine."""
