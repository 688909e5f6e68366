"""A schema registry that speaks the Confluent Schema Registry REST API, backed by PostgreSQL.

confluent-kafka's SchemaRegistryClient, AvroSerializer/AvroDeserializer and Flink's `avro-confluent` format
talk to it as they would to Confluent's. Only Avro schemas; compatibility decisions are Apache Avro's own.
Run it with `python -m services.registry`; tests build it with `create_app(dsn)`.
"""

from services.registry.app import create_app

__all__ = ["create_app"]
