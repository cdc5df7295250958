"""Deterministic, realistic demo data: Russian-speaking users and rental listings in real cities,
with prices that make sense per category. `sharehub seed` and the first `make run` use it;
benchmarks and ML use it with larger numbers."""
