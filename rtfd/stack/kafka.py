"""Apache Kafka in KRaft mode from its Maven Central jars: one controller and N brokers, or one combined node.

The design's topology: a dedicated controller (port 19093) and three brokers (client ports 9092-9094).
Storage is formatted on first start and kept across restarts.

Secure by default (Settings.kafka_sasl): clients authenticate with SASL/SCRAM-SHA-512 as one of the
platform's principals (rtfd.config.KAFKA_PRINCIPALS), whose credentials go into KRaft at format time; the
StandardAuthorizer allows each only what ACLS lists (applied after start, idempotently). admin is the super
user: the platform itself and inter-broker traffic. Brokers reach the controller with SASL/PLAIN as admin,
because SCRAM credentials live in the metadata log the controller serves and cannot authenticate it.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from rtfd import topology
from rtfd.config import KAFKA_PRINCIPALS, KAFKA_SASL_MECHANISM, Settings
from rtfd.stack.process import ManagedProcess, StackError

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c{1})%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "Java 17+ is required for Kafka but `java` is not on PATH. "
            "Install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17)."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    if major and major < 17:
        raise StackError(f"Kafka 4.x needs Java 17 or newer; `java -version` says: {out.splitlines()[0]}")
    return java


def kafka_classpath(jvm_dir: Path) -> str:
    jars = jvm_dir / "kafka"
    if not (jars / ".resolved").exists():
        raise StackError(
            f"the Kafka jars are not in {jars}. Run `make install` (it resolves them with Maven from "
            "jvm/kafka/pom.xml; install Maven first if `mvn` is missing)."
        )
    return f"{jars}/*"


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    roles: tuple[str, ...]  # ("controller",), ("broker",) or both
    client_port: int | None
    controller_port: int | None

    @property
    def name(self) -> str:
        if self.roles == ("controller",):
            return "kafka-controller"
        if "controller" in self.roles:
            return "kafka"
        return f"kafka-{self.node_id - 1}"


def plan_nodes(settings: Settings, brokers: int) -> list[KafkaNode]:
    """One dedicated controller plus `brokers` brokers, or a single combined node for --brokers 1."""
    ctrl = settings.port(topology.CONTROLLER_PORT)
    if brokers == 1:
        return [KafkaNode(1, ("broker", "controller"), settings.port(topology.BROKER_PORTS[0]), ctrl)]
    if not 1 <= brokers <= len(topology.BROKER_PORTS):
        raise StackError(f"--brokers must be 1..{len(topology.BROKER_PORTS)} (got {brokers})")
    nodes = [KafkaNode(1, ("controller",), None, ctrl)]
    nodes += [
        KafkaNode(i + 2, ("broker",), settings.port(topology.BROKER_PORTS[i]), None) for i in range(brokers)
    ]
    return nodes


# --- who may do what ----------------------------------------------------------------------------------------
READ, WRITE, DESCRIBE = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE


@dataclass(frozen=True)
class Grant:
    principal: str
    resource: ResourceType  # TOPIC or GROUP
    name: str
    operations: tuple[AclOperation, ...]
    prefixed: bool = False  # a name prefix (consumer groups with generated suffixes), else the literal name


# Least privilege per principal (docs/security.md has the table). admin is a super user and needs none.
# Consumers need READ on their group as well as on the topic; DESCRIBE lets a client see a topic's metadata.
ACLS: tuple[Grant, ...] = (
    Grant("producer", ResourceType.TOPIC, topology.TRANSACTIONS, (WRITE, DESCRIBE)),
    Grant("producer", ResourceType.TOPIC, topology.FRAUD_LABELS, (WRITE, DESCRIBE)),
    Grant("flink", ResourceType.TOPIC, topology.TRANSACTIONS, (READ, DESCRIBE)),
    Grant("flink", ResourceType.TOPIC, topology.FRAUD_RULES, (READ, DESCRIBE)),
    Grant("flink", ResourceType.TOPIC, topology.FRAUD_ALERTS, (WRITE, DESCRIBE)),
    Grant("flink", ResourceType.TOPIC, topology.TRANSACTIONS_DLQ, (WRITE, DESCRIBE)),
    Grant("flink", ResourceType.GROUP, "rtfd-flink", (READ,), prefixed=True),  # flink.config.CONSUMER_GROUP
    Grant("flink", ResourceType.GROUP, "rtfd-rules-", (READ,), prefixed=True),  # the rule feed (RuleFeed)
    Grant("alerts", ResourceType.TOPIC, topology.FRAUD_ALERTS, (READ, DESCRIBE)),
    Grant("alerts", ResourceType.TOPIC, topology.FRAUD_ALERTS_DLQ, (WRITE, DESCRIBE)),
    Grant("alerts", ResourceType.GROUP, "rtfd-alert-consumer", (READ,), prefixed=True),
    Grant("labels", ResourceType.TOPIC, topology.FRAUD_LABELS, (READ, DESCRIBE)),
    Grant("labels", ResourceType.TOPIC, topology.FRAUD_LABELS_DLQ, (WRITE, DESCRIBE)),
    Grant("labels", ResourceType.GROUP, "rtfd-labels-consumer", (READ,), prefixed=True),
    # the Panel dashboard reads PostgreSQL, not Kafka, today; its principal is ready for a live alert feed
    Grant("dashboard", ResourceType.TOPIC, topology.FRAUD_ALERTS, (READ, DESCRIBE)),
    Grant("dashboard", ResourceType.GROUP, "rtfd-dashboard", (READ,), prefixed=True),
)


def grants_for_tests(prefix: str = "test-") -> list[Grant]:
    """Every service principal may use topics and groups named `prefix`...: the tests run the real services
    on topics of their own. Only test stacks apply these (tests/conftest.py); `rtfd up` never does."""
    services = [p for p in KAFKA_PRINCIPALS if p != "admin"]
    topic_ops = (READ, WRITE, DESCRIBE, AclOperation.CREATE)
    return [Grant(p, ResourceType.TOPIC, prefix, topic_ops, prefixed=True) for p in services] + [
        Grant(p, ResourceType.GROUP, prefix, (READ,), prefixed=True) for p in services]


def acl_bindings(grants: tuple[Grant, ...] | list[Grant]) -> list[AclBinding]:
    bindings = []
    for grant in grants:
        pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
        for operation in grant.operations:
            bindings.append(AclBinding(grant.resource, grant.name, pattern, f"User:{grant.principal}", "*",
                                       operation, AclPermissionType.ALLOW))
    return bindings


def jaas(module: str, principal: str, password: str, **users: str) -> str:
    extra = "".join(f' user_{name}="{pw}"' for name, pw in users.items())
    return f'{module} required username="{principal}" password="{password}"{extra};'


def security_properties(settings: Settings, node: KafkaNode) -> dict:
    """SASL listeners, the authorizer and the admin's own credentials (written to a 0600 file)."""
    admin_password = settings.kafka_password("admin")
    props = {
        "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule", "admin", admin_password, admin=admin_password
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
        "allow.everyone.if.no.acl.found": "false",
    }
    if node.client_port:
        props.update({
            "sasl.mechanism.inter.broker.protocol": KAFKA_SASL_MECHANISM,
            "listener.name.client.sasl.enabled.mechanisms": KAFKA_SASL_MECHANISM,
            f"listener.name.client.{KAFKA_SASL_MECHANISM.lower()}.sasl.jaas.config": jaas(
                "org.apache.kafka.common.security.scram.ScramLoginModule", "admin", admin_password
            ),
        })  # fmt: skip
    return props


def server_properties(
    node: KafkaNode, nodes: list[KafkaNode], data_dir: Path, security: dict | None = None
) -> str:
    """A node's server.properties; `security` (security_properties) makes its listeners SASL, else plaintext."""
    brokers = sum("broker" in n.roles for n in nodes)
    controller = next(n for n in nodes if "controller" in n.roles)
    client = "CLIENT" if security else "PLAINTEXT"
    listeners, advertised = [], []
    if node.client_port:
        listeners.append(f"{client}://127.0.0.1:{node.client_port}")
        advertised.append(f"{client}://127.0.0.1:{node.client_port}")
    if node.controller_port:
        listeners.append(f"CONTROLLER://127.0.0.1:{node.controller_port}")
    props = {
        "process.roles": ",".join(node.roles),
        "node.id": node.node_id,
        "controller.quorum.voters": f"{controller.node_id}@127.0.0.1:{controller.controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join(listeners),
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": 3,
        "default.replication.factor": min(3, brokers),
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": min(3, brokers),
        "transaction.state.log.replication.factor": min(3, brokers),
        "transaction.state.log.min.isr": min(2, brokers),
        "share.coordinator.state.topic.replication.factor": min(3, brokers),
        "share.coordinator.state.topic.min.isr": min(2, brokers),
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",
        "log.retention.hours": 168,
    }
    if advertised:
        props["advertised.listeners"] = ",".join(advertised)
        props["inter.broker.listener.name"] = client
    props.update(security or {})
    return "".join(f"{k}={v}\n" for k, v in props.items())


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes in URL-safe base64, never with a leading '-' (as Kafka's own
    Uuid.randomUuid), which command lines would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaCluster:
    """Configures, formats and describes the native KRaft cluster under <state>/kafka."""

    def __init__(self, settings: Settings, jvm_dir: Path, env: dict[str, str]):
        self.settings = settings
        self.jvm_dir = jvm_dir
        self.env = env
        self.root = settings.state_dir.resolve() / "kafka"

    def processes(self, brokers: int) -> list[ManagedProcess]:
        return [self.process(node) for node in plan_nodes(self.settings, brokers)]

    def process(self, node: KafkaNode) -> ManagedProcess:
        heap = "-Xmx256m" if node.roles == ("controller",) else "-Xmx768m"
        cmd = [
            "java", "-Xms128m", heap, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp", kafka_classpath(self.jvm_dir), "kafka.Kafka", str(self.root / node.name / "server.properties"),
        ]  # fmt: skip
        return ManagedProcess(
            name=node.name,
            cmd=cmd,
            run_dir=self.settings.state_dir.resolve() / "run",
            log_dir=self.settings.state_dir.resolve() / "logs",
            port=node.client_port or node.controller_port,
            env=self.env,
            stop_timeout=60.0,
        )

    def configure(self, brokers: int) -> None:
        """Write configs and format storage once; refuse to reuse state of another topology."""
        java = java_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "log4j2.properties").write_text(LOG4J2)
        id_file = self.root / "cluster_id"
        topology_file = self.root / "topology"
        security_file = self.root / "security"
        wanted = f"brokers={brokers}"
        if topology_file.exists() and topology_file.read_text().strip() != wanted:
            raise StackError(
                f"{self.root} holds a cluster with {topology_file.read_text().strip()}, not {wanted}. "
                "Run `rtfd down --purge` to start over with the new topology."
            )
        mode = "sasl-scram" if self.settings.kafka_sasl else "plaintext"
        # SCRAM users are created at format time, so a cluster formatted plaintext cannot simply turn secure
        formatted = security_file.read_text().strip() if security_file.exists() else (
            "plaintext" if id_file.exists() else mode)
        if formatted != mode:
            raise StackError(
                f"{self.root} holds a Kafka cluster formatted {formatted}, but RTFD_KAFKA_SECURE asks for {mode}. "
                "Run `rtfd down --purge` to start over, or set RTFD_KAFKA_SECURE to match."
            )
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        topology_file.write_text(wanted)
        security_file.write_text(mode)
        cluster_id = id_file.read_text().strip()
        nodes = plan_nodes(self.settings, brokers)
        for node in nodes:
            node_dir = self.root / node.name
            data = node_dir / "data"
            node_dir.mkdir(parents=True, exist_ok=True)
            props = node_dir / "server.properties"
            security = security_properties(self.settings, node) if self.settings.kafka_sasl else None
            props.touch(mode=0o600)
            props.chmod(0o600)  # it holds the admin's password when secure
            props.write_text(server_properties(node, nodes, data, security))
            if (data / "meta.properties").exists():
                continue
            cmd = [java, "-cp", kafka_classpath(self.jvm_dir), "kafka.tools.StorageTool", "format",
                   f"--cluster-id={cluster_id}", "-c", str(props), "--ignore-formatted"]  # fmt: skip
            # (one token: a state folder may hold an id with a leading '-' from before new_cluster_id avoided it)
            passwords = []
            if self.settings.kafka_sasl and "controller" in node.roles:  # the controller bootstraps the users
                for principal in KAFKA_PRINCIPALS:
                    passwords.append(self.settings.kafka_password(principal))
                    cmd += ["--add-scram", f"{KAFKA_SASL_MECHANISM}=[name={principal},password={passwords[-1]}]"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                output = result.stdout + result.stderr
                for password in passwords:  # never echo a credential into an error message or log
                    output = output.replace(password, "***")
                raise StackError(f"formatting {node.name} storage failed:\n{output}")


def admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_client_conf(principal="admin", **{"socket.timeout.ms": 5000}))


def group_handle(settings: Settings, group: str, **conf) -> Consumer:
    """A consumer handle carrying `group`'s id, for `group_committed`: never subscribe it (it then neither joins
    the group nor commits) and never commit through it. A caller that reads the offsets repeatedly (the
    benchmark's sampler) keeps one per group and closes it itself. `conf` adds client settings (a logger)."""
    return Consumer(settings.kafka_client_conf(principal="admin",
                                               **{"group.id": group, "enable.auto.commit": False, **conf}))


def group_committed(settings: Settings, group: str, topics: list[str] | None = None,
                    timeout: float = 5.0, *, consumer: Consumer | None = None) -> dict[tuple[str, int], int]:
    """`group`'s committed offset per (topic, partition) of `topics` (default: every topic but Kafka's own);
    partitions the group never committed on are left out.

    Read through a consumer handle carrying the group's id (never subscribed, so it neither joins the group nor
    commits), never through `AdminClient.list_consumer_group_offsets`: librdkafka 2.16.0 (confluent-kafka
    2.16.1) answers a coordinator error on that admin OffsetFetch (NOT_COORDINATOR while a restarted broker
    takes its `__consumer_offsets` partitions back) by re-querying the coordinator of the handle's consumer
    group, which an admin handle lacks: `rd_kafka_cgrp_op(rk->rk_cgrp = NULL)`, a segfault of the whole process
    (docs/reliability.md). A consumer handle has its group.

    `consumer`: such a handle (`group_handle(settings, group)`: its group.id must be `group`) to read through
    instead of opening, and closing, one for this call; it is left open."""
    handle = consumer if consumer is not None else group_handle(settings, group)
    try:
        meta = handle.list_topics(timeout=timeout).topics
        names = topics if topics is not None else [t for t in meta if not t.startswith("__")]
        partitions = [TopicPartition(t, p) for t in names if t in meta for p in meta[t].partitions]
        if not partitions:
            return {}
        return {(tp.topic, tp.partition): tp.offset for tp in handle.committed(partitions, timeout=timeout)
                if tp.offset >= 0}
    finally:
        if consumer is None:
            handle.close()


def ensure_acls(settings: Settings, extra: list[Grant] | tuple[Grant, ...] = ()) -> int:
    """Create the ACLs of ACLS (plus `extra`) and (re)set every non-admin principal's SCRAM credential from
    its current password, so a rotated password applies on the next `up`. Idempotent; returns the ACL count."""
    if not settings.kafka_sasl:
        return 0
    client = admin(settings)
    bindings = acl_bindings([*ACLS, *extra])
    for binding, future in client.create_acls(bindings, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            raise StackError(f"creating the Kafka ACL {binding} failed: {exc}") from exc
    mechanism = ScramMechanism[KAFKA_SASL_MECHANISM.replace("-", "_")]
    info = ScramCredentialInfo(mechanism, 8192)
    upserts = [UserScramCredentialUpsertion(p, info, settings.kafka_password(p).encode())
               for p in KAFKA_PRINCIPALS if p != "admin"]  # admin's is the brokers' own: see docs/security.md
    for user, future in client.alter_user_scram_credentials(upserts).items():
        try:
            future.result()
        except KafkaException as exc:
            raise StackError(f"setting the SCRAM credential of Kafka principal {user} failed: {exc}") from exc
    return len(bindings)


def live_broker_count(settings: Settings) -> int:
    return len(admin(settings).list_topics(timeout=5).brokers)


def ensure_topics(settings: Settings, brokers: int) -> list[str]:
    """Create the platform's topics if missing (replication adapts to the broker count) and, when Kafka is
    secure, the ACLs of who may use them (ensure_acls); return the topics created."""
    client = admin(settings)
    existing = set(client.list_topics(timeout=10).topics)
    new = []
    for spec in topology.TOPICS:
        if spec.name in existing:
            continue
        replication = min(spec.replication, brokers)
        config = dict(spec.config)
        if "min.insync.replicas" in config:
            config["min.insync.replicas"] = str(min(int(config["min.insync.replicas"]), replication))
        new.append(NewTopic(spec.name, spec.partitions, replication, config=config))
    created = []
    for name, future in (client.create_topics(new, operation_timeout=30).items() if new else []):
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"creating topic {name} failed: {exc}") from exc
    ensure_acls(settings)
    return created


def describe_topics(settings: Settings) -> list[dict]:
    """Partitions, replicas and in-sync replicas of the platform's topics (for `rtfd status`)."""
    client = admin(settings)
    meta = client.list_topics(timeout=5)
    rows = []
    for spec in topology.TOPICS:
        topic = meta.topics.get(spec.name)
        if topic is None or topic.error is not None:
            rows.append({"topic": spec.name, "exists": False})
            continue
        parts = topic.partitions.values()
        rows.append(
            {
                "topic": spec.name,
                "exists": True,
                "partitions": len(parts),
                "replication": min((len(p.replicas) for p in parts), default=0),
                "min_isr": min((len(p.isrs) for p in parts), default=0),
                "under_replicated": sum(len(p.isrs) < len(p.replicas) for p in parts),
                "offline": sum(p.leader < 0 for p in parts),
            }
        )
    configs = client.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, r["topic"]) for r in rows if r["exists"]]
    )
    for resource, future in configs.items():
        try:
            entries = future.result(timeout=5)
        except Exception:  # noqa: BLE001 - status is best effort
            continue
        for row in rows:
            if row["topic"] == resource.name:
                row["cleanup_policy"] = entries["cleanup.policy"].value
                row["min_insync_replicas"] = entries["min.insync.replicas"].value
    return rows
