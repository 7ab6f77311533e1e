"""Throughput of the training steps beside the naive reference step: sizes and variants (`variants`), the benchmark
world (`world`), the steps (`harness`, with the released alignment walk in `reference_align`), the timing loop
(`measure`), FLOPs and MFU (`flops`), the report table (`report`), the `cvil-bench throughput` command (`cli`) and
the CI gate (`python -m bench.throughput.speed_gate`).

Self-contained on purpose: these modules import each other relatively and, besides `cvil`, nothing else of this
repository at import time, because the speed gate copies them beside an older checkout to time it (`speed_gate`).
"""
