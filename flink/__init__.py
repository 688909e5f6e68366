"""The PyFlink stream job: decode and validate transactions, archive them to PostgreSQL, dead-letter bad
records, compute per-card features in Flink SQL and evaluate live-configurable fraud rules (see docs/flink.md).

The top-level name `flink` is ours (PyFlink's package is `pyflink`).
"""
