"""Benchmarks (not tests): a bulk dataset builder and the dashboard load script."""
