"""Benchmark layer: grids, searches, significance tests, throughput harness (`cvil-bench`)."""
