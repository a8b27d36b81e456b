"""Benchmarks (scripts, not timed tests): network speed and survey-scale inference."""
