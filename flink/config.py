"""What the job needs to know about the platform, taken from rtfd.config.Settings once, on the client.

TaskManager Python workers may not share the client's RTFD_* environment, so every value a UDF needs is
passed into its constructor from here rather than read from Settings inside the worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rtfd import topology
from rtfd.config import KAFKA_SASL_MECHANISM, Settings

JOB_NAME = "rtfd-fraud-detection"
CONSUMER_GROUP = "rtfd-flink"
KAFKA_PRINCIPAL = "flink"  # its ACLs: rtfd/stack/kafka.py
# The Flink Kafka connector shades the Kafka client, so its JAAS login module lives under this package
SHADED_SCRAM_LOGIN_MODULE = "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def jdbc_from_dsn(dsn: str) -> tuple[str, str, str]:
    """postgresql://user:pw@host:port/db?x=y -> (jdbc:postgresql://host:port/db?x=y&reWriteBatchedInserts=true,
    user, password). reWriteBatchedInserts: the driver sends a batch of the archive's upserts as multi-row
    INSERT ... VALUES (...), (...) ON CONFLICT statements instead of one statement per row (the JDBC sink keeps
    one row per key in a batch, which a multi-row ON CONFLICT DO UPDATE requires)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql:// DSN (scheme {parts.scheme!r})")
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    params = [p for p in parts.query.split("&") if p and not p.startswith("reWriteBatchedInserts=")]
    query = "?" + "&".join([*params, "reWriteBatchedInserts=true"])
    url = f"jdbc:postgresql://{host}{port}{parts.path}{query}"
    return url, unquote(parts.username or ""), unquote(parts.password or "")


def jvm_jars() -> list[Path]:
    """Connector jars resolved by `make jars` (jvm/flink/pom.xml) into $RTFD_JVM_DIR/flink, and the job's own
    Java functions (jvm/functions, compiled by `make jars` against the wheel's Flink) in $RTFD_JVM_DIR/functions."""
    from rtfd.stack import jvm_dir

    jars = []
    for folder, what in (("flink", "connector jars"), ("functions", "the job's Java functions")):
        found = sorted((jvm_dir() / folder).glob("*.jar"))
        if not found:
            raise FileNotFoundError(f"no {what} in {jvm_dir() / folder}: run `make jars` (needs Maven and a JDK)")
        jars += found
    return jars


def shipped_jars(lib_dir: str | None = None) -> list[Path]:
    """The jars a submission ships with the job (pipeline.jars): jvm_jars() but those the cluster already has
    in its lib/ folder ($FLINK_LIB_DIR, which Flink's scripts export to a `flink run -py` client).

    The native cluster and the compose image keep the connector jars in lib/ (rtfd.stack.flink links them
    there), so they are loaded once by the cluster's class loader. Shipped with every job instead, each
    submission loaded them again in a new user class loader, and every old loader stayed alive (what pins
    them is not known; it still pins the now nearly empty loaders): after about nine submissions the
    TaskManager died of `OutOfMemoryError: Metaspace`. Only the job's own functions travel with it, so a rebuilt
    jvm/functions takes effect on the next submission without a cluster restart. Without a lib folder (a
    local mini-cluster, the tests) every jar is shipped."""
    lib_dir = os.environ.get("FLINK_LIB_DIR") if lib_dir is None else lib_dir
    in_lib = {jar.name for jar in Path(lib_dir).glob("*.jar")} if lib_dir else set()
    return [jar for jar in jvm_jars() if jar.name not in in_lib]


@dataclass(frozen=True)
class JobConfig:
    bootstrap_servers: str
    registry_url: str
    jdbc_url: str
    jdbc_user: str
    jdbc_password: str = field(repr=False)
    transactions_topic: str = topology.TRANSACTIONS
    alerts_topic: str = topology.FRAUD_ALERTS
    dlq_topic: str = topology.TRANSACTIONS_DLQ
    rules_topic: str = topology.FRAUD_RULES
    alerts_subject: str = topology.value_subject(topology.FRAUD_ALERTS)
    archive_table: str = "transactions"
    group_id: str = CONSUMER_GROUP
    watermark_delay_ms: int = 200
    """Bounded out-of-orderness of the Kafka record timestamps (= event_time)."""
    idle_timeout_ms: int = 3000
    """A partition without records for this long stops holding back the watermark."""
    kafka_password: str | None = field(default=None, repr=False)
    """The flink principal's password when Kafka is secure (SASL/SCRAM), else None (plaintext)."""
    terminal_window_min: int = 60
    terminal_span_min: int = 120
    archive: bool = True
    detect: bool = True
    dlq: bool = True
    alert_bundle_ms: int = 5
    """The job's one Python step, rule pass 2 + alert encoding, takes rows in bundles of at most this many ms
    (Settings.flink_alert_bundle_ms) ..."""
    python_bundle_size: int = 1000
    """... or this many rows (Settings.flink_bundle_size), which is also the Arrow batch of the pandas UDF."""

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides) -> JobConfig:
        settings = settings or Settings()
        # the archive sink writes as rtfd_flink (0005_component_roles.sql) when the stack runs PostgreSQL
        url, user, password = jdbc_from_dsn(settings.component_dsn("flink"))
        kafka_password = settings.kafka_password(KAFKA_PRINCIPAL) if settings.kafka_sasl else None
        base = cls(settings.kafka_bootstrap, settings.registry, url, user, password, kafka_password=kafka_password,
                   alert_bundle_ms=settings.flink_alert_bundle_ms, python_bundle_size=settings.flink_bundle_size)
        return replace(base, **overrides)

    def rule_feed_conf(self) -> dict[str, str]:
        """librdkafka configuration of the rule feed (flink.rules.config.RuleFeed) inside the job."""
        conf = {"bootstrap.servers": self.bootstrap_servers}
        if self.kafka_password is not None:
            conf.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": KAFKA_SASL_MECHANISM,
                         "sasl.username": KAFKA_PRINCIPAL, "sasl.password": self.kafka_password})
        return conf

    def kafka_sql_options(self) -> str:
        """The Kafka tables' security options (flink/sql/tables.sql ${kafka_security}); none when plaintext.
        Flink hides option values whose key contains 'jaas.config' wherever it prints configuration."""
        if self.kafka_password is None:
            return ""
        jaas = f'{SHADED_SCRAM_LOGIN_MODULE} required username="{KAFKA_PRINCIPAL}" password="{self.kafka_password}";'
        options = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": KAFKA_SASL_MECHANISM,
                   "sasl.jaas.config": jaas}
        return "".join(f"'properties.{key}' = '{value.replace(chr(39), chr(39) * 2)}',\n  "
                       for key, value in options.items())

    def sql_vars(self) -> dict[str, str]:
        """Values substituted into flink/sql/*.sql (${name})."""
        from flink import fx
        from flink.rules.config import load_defaults

        def quoted(text: str) -> str:
            return text.replace("'", "''")


        return {
            "bootstrap": quoted(self.bootstrap_servers),
            "kafka_security": self.kafka_sql_options(),
            "registry_url": quoted(self.registry_url),
            "jdbc_url": quoted(self.jdbc_url),
            "jdbc_user": quoted(self.jdbc_user),
            "jdbc_password": quoted(self.jdbc_password),
            "transactions_topic": quoted(self.transactions_topic),
            "alerts_topic": quoted(self.alerts_topic),
            "dlq_topic": quoted(self.dlq_topic),
            "rules_topic": quoted(self.rules_topic),
            "alerts_subject": quoted(self.alerts_subject),
            "archive_table": quoted(self.archive_table),
            "group_id": quoted(self.group_id),
            "watermark_delay": f"{self.watermark_delay_ms / 1000:.3f}",
            "amount_eur": fx.amount_eur_sql("amount_minor", "currency"),
            # structural: fixed when the job starts (live changes of tiny_eur apply on the next restart)
            "tiny_eur": repr(float(load_defaults()["card_testing"].params["tiny_eur"])),
            # compromised_terminal's context (structural as well): the card's in-person visit counts when it
            # was at most this long before the anomaly, and anomalous cards are counted over this span
            "terminal_window_min": str(self.terminal_window_min),
            "terminal_span_min": str(self.terminal_span_min),
        }

