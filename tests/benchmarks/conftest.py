"""Benchmarks run in the same session as their raw standard-library idioms, grouped side by side."""
