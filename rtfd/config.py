"""Settings for every rtfd process, read from RTFD_* environment variables (and an optional .env file).

One class, one place: each client asks it for its own configuration dict instead of hard-coding hosts.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rtfd import topology

# The Kafka principals (SASL/SCRAM users) of the platform; their ACLs are in rtfd/stack/kafka.py (ACLS).
KAFKA_PRINCIPALS = ("admin", "producer", "flink", "alerts", "labels", "dashboard")
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
KAFKA_PASSWORD = re.compile(r"[A-Za-z0-9._~+/-]{8,}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTFD_", env_file=".env", extra="ignore")

    state_dir: Path = Path(".rtfd")
    """Logs, data, pid files and generated secrets of the native stack."""
    port_offset: int = 0
    """Added to every native port, so a second stack (the tests') can run beside the first."""
    bootstrap_servers: str | None = None
    """Kafka bootstrap servers; default: the native stack's brokers."""
    registry_url: str | None = None
    """Schema registry URL; default: the native registry."""
    registry_user: str = "rtfd"
    """User name for the schema registry's HTTP basic auth (writes always need it, reads per registry_read_auth)."""
    registry_password: SecretStr | None = None
    """The registry user's password; for the native registry generated into the state folder if unset."""
    registry_read_auth: bool = False
    """Whether the registry also wants credentials for reads (GET, lookups, compatibility checks)."""
    pg_dsn: SecretStr | None = None
    """An existing PostgreSQL database; when unset `rtfd up` runs a private cluster in the state folder."""
    pg_password: SecretStr = SecretStr("rtfd")
    """Password of the `rtfd` role in the private PostgreSQL cluster."""
    card_token_key: SecretStr | None = None
    """HMAC-SHA256 key that turns card numbers into card tokens; generated into the state folder if unset."""
    pg_os_user: str = "postgres"
    """Unprivileged OS user that runs initdb/pg_ctl when rtfd runs as root (PostgreSQL refuses root)."""
    flink_alert_bundle_ms: int = Field(5, ge=1)
    """Bundle time of the fraud job's one Python step, rule pass 2 and the alert encoding (flink/udfs.py
    raise_alerts), which sees only the anomalies (~1 % of the transactions): its bundles hold a row or two
    whatever their length, so a short one costs little CPU and each alert waits less."""
    flink_bundle_size: int = Field(1000, ge=1)
    """Most rows in one bundle (and one Arrow batch) of that Python step: a backlog of anomalies drains in
    batches of this size."""
    kafka_secure: bool | None = None
    """SASL/SCRAM listeners and ACLs on the native brokers, SASL in every client; RTFD_KAFKA_SECURE=0: plaintext.
    Unset: what the state folder's cluster was formatted with, secure for a new one (see kafka_sasl)."""
    kafka_admin_password: SecretStr | None = None
    """Password of each Kafka principal (RTFD_KAFKA_<PRINCIPAL>_PASSWORD); for the native stack generated into
    the state folder if unset. admin is the platform itself (rtfd CLI, topic creation, inter-broker)."""
    kafka_producer_password: SecretStr | None = None
    kafka_flink_password: SecretStr | None = None
    kafka_alerts_password: SecretStr | None = None
    kafka_labels_password: SecretStr | None = None
    kafka_dashboard_password: SecretStr | None = None

    @field_validator(*(f"kafka_{p}_password" for p in KAFKA_PRINCIPALS))
    @classmethod
    def _kafka_password_unset_if_empty(cls, value: SecretStr | None) -> SecretStr | None:
        # an empty line copied from .env.example means "not set". The format is checked in kafka_password:
        # a validation error here would print the rejected value
        return None if value is None or value.get_secret_value() == "" else value

    @field_validator("registry_user")
    @classmethod
    def _basic_auth_user(cls, value: str) -> str:
        if not value or ":" in value:
            raise ValueError("RTFD_REGISTRY_USER must be non-empty and without ':' (HTTP basic auth user name)")
        return value

    # --- derived ------------------------------------------------------------------------------------------
    def port(self, base: int) -> int:
        return base + self.port_offset

    @property
    def stack_file(self) -> Path:
        return self.state_dir / "stack.json"

    def stack_info(self) -> dict:
        """What the last `rtfd up` recorded (broker count and so on); empty if it never ran."""
        try:
            return json.loads(self.stack_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    @property
    def broker_count(self) -> int:
        return int(self.stack_info().get("brokers", len(topology.BROKER_PORTS)))

    @cached_property
    def kafka_bootstrap(self) -> str:
        if self.bootstrap_servers:
            return self.bootstrap_servers
        ports = topology.BROKER_PORTS[: self.broker_count]
        return ",".join(f"127.0.0.1:{self.port(p)}" for p in ports)

    @cached_property
    def registry(self) -> str:
        return self.registry_url or self.native_registry

    @property
    def postgres_dsn(self) -> str:
        if self.pg_dsn is not None:
            return self.pg_dsn.get_secret_value()
        pw = self.pg_password.get_secret_value()
        return f"postgresql://rtfd:{pw}@127.0.0.1:{self.port(topology.POSTGRES_PORT)}/rtfd"

    @property
    def managed_postgres(self) -> bool:
        return self.pg_dsn is None

    def card_key(self) -> bytes:
        """The card-token HMAC key: RTFD_CARD_TOKEN_KEY, else one generated once into the state folder."""
        if self.card_token_key is not None:
            return self.card_token_key.get_secret_value().encode()
        return self.state_secret("card_token_key").encode()

    def component_dsn(self, component: str) -> str:
        """The DSN a component (flink, alerts, lake, registry) connects with: its own least-privilege role
        (schemas/postgres/0005_component_roles.sql) when the stack runs PostgreSQL, else RTFD_PG_DSN's user."""
        if not self.managed_postgres:
            return self.postgres_dsn
        from rtfd.security.roles import role_dsn

        return role_dsn(self.postgres_dsn, component, self.state_secret(f"{component}_db_password"))

    @property
    def kafka_sasl(self) -> bool:
        """Whether Kafka speaks SASL: RTFD_KAFKA_SECURE if given; else what the native cluster of the state
        folder was formatted with (a cluster from before SASL stays plaintext until `rtfd down --purge`);
        else (a new state folder, or Kafka elsewhere, e.g. compose) secure."""
        if self.kafka_secure is not None:
            return self.kafka_secure
        if not self.native_kafka:
            return True
        kafka_dir = self.state_dir / "kafka"
        if (kafka_dir / "security").exists():  # written by `rtfd up` (rtfd/stack/kafka.py)
            return (kafka_dir / "security").read_text().strip() != "plaintext"
        return not (kafka_dir / "cluster_id").exists()

    @property
    def native_kafka(self) -> bool:
        """Whether the Kafka clients talk to this state folder's native brokers."""
        native = {f"127.0.0.1:{self.port(p)}" for p in topology.BROKER_PORTS}
        return set(self.kafka_bootstrap.split(",")) <= native

    @property
    def native_registry(self) -> str:
        return f"http://127.0.0.1:{self.port(topology.REGISTRY_PORT)}"

    def registry_credentials(self) -> tuple[str, str] | None:
        """(user, password) for the schema registry: RTFD_REGISTRY_PASSWORD, else, for the native registry,
        the one generated into the state folder; None for another registry without a password given
        (the native password is never sent elsewhere)."""
        if self.registry_password is not None:
            return self.registry_user, self.registry_password.get_secret_value()
        if self.registry_url and self.registry_url.rstrip("/") != self.native_registry:
            return None
        return self.registry_user, self.state_secret("registry_password")

    def kafka_password(self, principal: str) -> str:
        """A Kafka principal's password: RTFD_KAFKA_<PRINCIPAL>_PASSWORD, else, for the native brokers, the one
        generated into the state folder (never sent to other brokers: those need the variable)."""
        if principal not in KAFKA_PRINCIPALS:
            raise ValueError(f"unknown Kafka principal {principal!r}; known: {', '.join(KAFKA_PRINCIPALS)}")
        given: SecretStr | None = getattr(self, f"kafka_{principal}_password")
        if given is not None:
            if not KAFKA_PASSWORD.fullmatch(given.get_secret_value()):
                raise ValueError(
                    f"RTFD_KAFKA_{principal.upper()}_PASSWORD must be 8+ characters of A-Z a-z 0-9 . _ ~ + / - "
                    "(it goes into JAAS quotes and kafka-storage's [name=..,password=..]); e.g. openssl rand -hex 16"
                )
            return given.get_secret_value()
        if not self.native_kafka:
            raise ValueError(
                f"RTFD_KAFKA_{principal.upper()}_PASSWORD is not set: needed for the Kafka principal {principal!r} "
                f"at {self.kafka_bootstrap} (generated passwords are only for the native stack)"
            )
        return self.state_secret(f"kafka_{principal}_password")

    def state_secret(self, name: str) -> str:
        """A random secret generated once into <state>/secrets/<name> (0600) and kept across restarts."""
        path = self.state_dir / "secrets" / name
        if not path.exists():
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(secrets.token_hex(32 if name.endswith("key") else 12))
            path.chmod(0o600)
        return path.read_text().strip()

    # --- client configuration -----------------------------------------------------------------------------
    def kafka_client_conf(self, *, principal: str, **extra) -> dict:
        """Any Kafka client's base configuration, authenticated as `principal` (one of KAFKA_PRINCIPALS) when
        Kafka is secure. The password goes in sasl.password, which librdkafka never logs."""
        conf: dict = {"bootstrap.servers": self.kafka_bootstrap}
        if self.kafka_sasl:
            conf.update({
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": KAFKA_SASL_MECHANISM,
                "sasl.username": principal,
                "sasl.password": self.kafka_password(principal),
            })  # fmt: skip
        elif principal not in KAFKA_PRINCIPALS:
            raise ValueError(f"unknown Kafka principal {principal!r}; known: {', '.join(KAFKA_PRINCIPALS)}")
        conf.update(extra)
        return conf

    def kafka_jaas_config(self, principal: str, login_module: str) -> str:
        """sasl.jaas.config for a JVM client (Flink's shaded Kafka client passes its own login module class)."""
        password = self.kafka_password(principal)
        return f'{login_module} required username="{principal}" password="{password}";'

    def kafka_producer_conf(self, *, principal: str, **extra) -> dict:
        conf = {
            **self.kafka_client_conf(principal=principal),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
        }
        conf.update(extra)
        return conf

    def kafka_consumer_conf(self, group_id: str, *, principal: str, **extra) -> dict:
        conf = {
            **self.kafka_client_conf(principal=principal),
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        conf.update(extra)
        return conf

    def registry_conf(self) -> dict:
        """confluent-kafka SchemaRegistryClient configuration, with basic auth when credentials are known
        (its basic.auth.user.info; this client takes no basic.auth.credentials.source)."""
        conf = {"url": self.registry}
        credentials = self.registry_credentials()
        if credentials is not None:
            conf["basic.auth.user.info"] = ":".join(credentials)
        return conf
