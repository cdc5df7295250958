"""Benchmarks. Each prints medians and a ratio against a baseline measured in the same run
(the machine is shared and noisy, so absolute numbers matter less than ratios)."""
