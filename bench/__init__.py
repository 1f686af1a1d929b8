"""Benchmarks: each runs with one command, prints a table and writes JSON (see README)."""
