"""Helpers for the project's tests (and benchmarks): a real PostgreSQL, fresh databases."""
