"""Replay of transaction files into Kafka, and loading of fraud label files."""
