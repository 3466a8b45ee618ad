"""Side-by-side benchmarks against the PyTorch peers a user would pick instead (`python -m benchmarks`).

Every `bench_*` module exposes `rows(quick: bool) -> list[dict]` with keys name, ours, peer, unit,
ratio (speed-up of ours over the peer: higher is better) and detail (sizes and what the peer is).
They are not tests: timing is never asserted. Results of the last full run: benchmarks/RESULTS.md.
"""
