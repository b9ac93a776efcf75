"""Utilities every layer may use: progress display, DDP helpers, atomic file writes.

This package imports no other slimkit package, so anything (sparse, metrics, train, runs) can
depend on it without creating a cycle.
"""
