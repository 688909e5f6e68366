"""Bank producers: a deterministic transaction simulator and the Kafka producer that streams it."""
