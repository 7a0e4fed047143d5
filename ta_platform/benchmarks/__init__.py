"""Benchmarks that run the platform's own science code on synthetic data at the seeds' scale (no Dagster)."""
