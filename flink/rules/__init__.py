"""Fraud rules as data: defaults.json, overrides from the compacted `fraud-rules` topic, a numpy engine."""
