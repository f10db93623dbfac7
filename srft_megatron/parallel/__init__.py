"""Parallel layout (TP/PP/DP), process-group setup, and the CPU compatibility shim for tests."""
