"""Benchmarks run by make targets (`make bench-stream`); not part of the installed package."""
