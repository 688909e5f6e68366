"""The schema registry (services/registry): pure compatibility rules, then the real server over HTTP.

Server tests talk to the registry the `stack` fixture runs, through confluent-kafka's SchemaRegistryClient
and through raw HTTP (httpx). Each test uses its own subjects and sets the subject's level itself, so none
depends on another's leftovers or on the global level.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from starlette.testclient import TestClient

import schemas
from services.registry import compat, create_app

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


def record(*fields: dict, name: str = "Probe") -> str:
    """A small record schema; the compatibility cases below differ only in their fields."""
    return json.dumps({"type": "record", "name": name, "namespace": "io.rtfd.test", "fields": list(fields)})


A = {"name": "a", "type": "int"}
B_REQUIRED = {"name": "b", "type": "string"}
B_DEFAULT = {"name": "b", "type": "string", "default": "x"}


def parsed(*fields: dict):
    return compat.parse(record(*fields))


def new_subject() -> str:
    return f"test-registry-{uuid.uuid4().hex[:12]}-value"


# --- pure: compatibility decisions ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("level", "old", "new", "ok"),
    [
        # BACKWARD: the new reader needs a default for a field old data lacks
        ("BACKWARD", [A], [A, B_DEFAULT], True),
        ("BACKWARD", [A], [A, B_REQUIRED], False),
        ("BACKWARD", [A, B_REQUIRED], [A], True),  # a removed field is just skipped when reading old data
        # FORWARD: the old reader must find what it needs in new data
        ("FORWARD", [A], [A, B_REQUIRED], True),
        ("FORWARD", [A, B_REQUIRED], [A], False),
        ("FULL", [A], [A, B_DEFAULT], True),
        ("FULL", [A], [A, B_REQUIRED], False),
        ("FULL", [A, B_REQUIRED], [A], False),
        ("NONE", [A], [{"name": "a", "type": "string"}], True),
        ("BACKWARD", [A], [{"name": "a", "type": "string"}], False),
        ("BACKWARD", [A], [{"name": "a", "type": "long"}], True),  # Avro promotes int to long
    ],
)
def test_levels_follow_avro(level, old, new, ok):
    problems = compat.incompatibilities(level, parsed(*new), [(1, parsed(*old))])
    assert (problems == []) is ok, problems


def test_transitive_levels_check_every_version():
    # v3 drops b's default: v2 data has b, so v3 reads it; v1 data lacks b, so v3 cannot read it
    history = [(1, parsed(A)), (2, parsed(A, B_DEFAULT))]
    v3 = parsed(A, B_REQUIRED)
    assert compat.incompatibilities("BACKWARD", v3, history) == []
    assert compat.incompatibilities("FULL", v3, history) == []
    (problem,) = compat.incompatibilities("BACKWARD_TRANSITIVE", v3, history)
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in problem and "version 1" in problem
    assert compat.incompatibilities("FULL_TRANSITIVE", v3, history)


def test_transaction_v2_evolves_v1_fully():
    v1, v2 = (compat.parse(schemas.transaction_schema(v)) for v in (1, 2))
    assert compat.incompatibilities("FULL_TRANSITIVE", v2, [(1, v1)]) == []


def test_canonical_form_ignores_whitespace_and_key_order_but_keeps_defaults():
    pretty = (schemas.AVRO_DIR / "transaction-v1.avsc").read_text()
    assert compat.fingerprint(pretty) == compat.fingerprint(schemas.transaction_schema(1))
    assert compat.fingerprint('{"name":"A","type":"fixed","size":4}') == compat.fingerprint(
        '{"type": "fixed", "size": 4, "name": "A"}'
    )
    assert compat.fingerprint(record(A, B_REQUIRED)) != compat.fingerprint(record(A, B_DEFAULT))


@pytest.mark.parametrize("text", ["{not json", '{"type": "record", "name": "A"}', '"no_such_type"', "42"])
def test_invalid_schemas_are_rejected(text):
    with pytest.raises(compat.InvalidSchema):
        compat.parse(text)


def test_levels_are_case_insensitive_and_closed():
    assert compat.is_level("full_transitive") and compat.is_level("NONE")
    assert not compat.is_level("SIDEWAYS") and not compat.is_level(None)


# --- the real server --------------------------------------------------------------------------------------
@pytest.fixture
def http(stack):
    # changes need the registry's credentials (services/registry/auth.py); tests/security covers the refusals
    with httpx.Client(base_url=stack.registry, auth=stack.registry_credentials(), timeout=10) as client:
        yield client


@pytest.fixture
def client(stack):
    """A fresh client per test, so its cache never answers in the server's place."""
    return SchemaRegistryClient(stack.registry_conf())


def error_code(response: httpx.Response) -> int:
    assert response.headers["content-type"].startswith(MEDIA_TYPE)
    return response.json()["error_code"]


def post(http: httpx.Client, path: str, schema: str, **body) -> httpx.Response:
    return http.post(path, json={"schema": schema, **body}, headers={"Content-Type": MEDIA_TYPE})


@pytest.mark.stack
def test_transaction_v1_then_v2_under_backward(stack, client, http):
    subject = new_subject()
    client.set_compatibility(subject, "BACKWARD")
    v1 = client.register_schema(subject, Schema(schemas.transaction_schema(1), "AVRO"))
    v2 = client.register_schema(subject, Schema(schemas.transaction_schema(2), "AVRO"))
    assert v1 != v2
    assert client.get_versions(subject) == [1, 2]
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, v2)
    assert json.loads(latest.schema.schema_str) == schemas.schema_dict("transaction-v2.avsc")

    # idempotent, through a client with an empty cache and as the pretty-printed file text
    again = SchemaRegistryClient(stack.registry_conf()).register_schema(
        subject, Schema(schemas.transaction_schema(1), "AVRO")
    )
    pretty = post(http, f"/subjects/{subject}/versions", (schemas.AVRO_DIR / "transaction-v1.avsc").read_text())
    assert again == v1 and pretty.json() == {"id": v1}
    assert http.get(f"/subjects/{subject}/versions").json() == [1, 2]

    # the same text in another subject reuses the global id
    other = new_subject()
    assert post(http, f"/subjects/{other}/versions", schemas.transaction_schema(1)).json() == {"id": v1}
    assert {subject, other} <= set(http.get(f"/schemas/ids/{v1}/subjects").json())  # + earlier runs' subjects
    assert {"subject": subject, "version": 1} in http.get(f"/schemas/ids/{v1}/versions").json()

    by_id = http.get(f"/schemas/ids/{v2}", params={"subject": subject})
    assert by_id.headers["content-type"].startswith(MEDIA_TYPE)
    assert json.loads(by_id.json()["schema"]) == schemas.schema_dict("transaction-v2.avsc")
    assert http.get(f"/schemas/ids/{v2}/schema").json() == schemas.schema_dict("transaction-v2.avsc")
    assert http.get(f"/subjects/{subject}/versions/1/schema").json() == schemas.schema_dict("transaction-v1.avsc")
    assert http.get(f"/subjects/{subject}/versions/-1").json()["version"] == 2

    found = client.lookup_schema(subject, Schema(schemas.transaction_schema(1), "AVRO"))
    assert (found.schema_id, found.version) == (v1, 1)


@pytest.mark.stack
def test_incompatible_changes_get_409(client, http):
    subject = new_subject()
    client.set_compatibility(subject, "BACKWARD")
    client.register_schema(subject, Schema(schemas.transaction_schema(1), "AVRO"))

    required = schemas.schema_dict("transaction-v2.avsc")
    required["fields"].append({"name": "risk_band", "type": "string"})  # no default: old data lacks it
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(subject, Schema(json.dumps(required), "AVRO"))
    assert err.value.http_status_code == 409 and err.value.error_code == 409

    retyped = schemas.schema_dict("transaction-v1.avsc")
    for field in retyped["fields"]:
        if field["name"] == "amount_minor":
            field["type"] = "string"
    response = post(http, f"/subjects/{subject}/versions", json.dumps(retyped))
    assert response.status_code == 409 and error_code(response) == 409
    assert "amount_minor" in response.json()["message"] or "TYPE_MISMATCH" in response.json()["message"]
    assert http.get(f"/subjects/{subject}/versions").json() == [1]


@pytest.mark.stack
def test_error_codes(client, http):
    subject = new_subject()
    missing = http.get(f"/subjects/{subject}/versions")
    assert (missing.status_code, error_code(missing)) == (404, 40401)
    with pytest.raises(SchemaRegistryError) as err:
        client.get_latest_version(subject)
    assert err.value.error_code == 40401

    client.register_schema(subject, Schema(record(A), "AVRO"))
    assert error_code(http.get(f"/subjects/{subject}/versions/99")) == 40402
    assert error_code(http.get(f"/subjects/{subject}/versions/abc")) == 42202
    assert error_code(http.get(f"/subjects/{subject}/versions/0")) == 42202
    assert error_code(http.get("/schemas/ids/2147483000")) == 40403
    with pytest.raises(SchemaRegistryError) as err:
        client.get_schema(2147483001)
    assert err.value.error_code == 40403

    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(subject, Schema("{not an avro schema", "AVRO"))
    assert (err.value.http_status_code, err.value.error_code) == (422, 42201)
    invalid = post(http, f"/subjects/{subject}/versions", '{"type": "record", "name": "NoFields"}')
    assert (invalid.status_code, error_code(invalid)) == (422, 42201)
    protobuf = post(http, f"/subjects/{subject}/versions", 'syntax = "proto3";', schemaType="PROTOBUF")
    assert error_code(protobuf) == 42201

    with pytest.raises(SchemaRegistryError) as err:
        client.set_compatibility(subject, "SIDEWAYS")
    assert err.value.error_code == 42203
    assert error_code(http.put("/config", json={"compatibility": "SIDEWAYS"})) == 42203

    unregistered = post(http, f"/subjects/{subject}", record(A, B_DEFAULT))
    assert (unregistered.status_code, error_code(unregistered)) == (404, 40403)
    assert error_code(post(http, f"/subjects/{new_subject()}", record(A))) == 40401


@pytest.mark.stack
def test_unknown_routes_and_fixed_endpoints(http):
    for path in ("/associations/resources/lkc-1/transactions", "/no/such/route", "/schemas/ids/abc"):
        response = http.get(path, params={"resourceType": "topic"})
        assert response.status_code == 404
        assert response.json() == {"error_code": 404, "message": "HTTP 404 Not Found"}
    assert http.get("/").json() == {}
    assert http.get("/mode").json() == {"mode": "READWRITE"}
    assert http.get("/schemas/types").json() == ["AVRO"]
    assert http.get(f"/subjects/{new_subject()}/versions/1/referencedby").json() == []
    assert http.delete("/subjects").status_code == 405


@pytest.mark.stack
def test_subject_level_overrides_global(client, http):
    subject, bystander = new_subject(), new_subject()
    global_level = http.get("/config").json()["compatibilityLevel"]
    client.register_schema(subject, Schema(record(A), "AVRO"))

    client.set_compatibility(subject, "NONE")
    assert client.get_compatibility(subject) == "NONE"
    assert client.register_schema(subject, Schema(record({"name": "a", "type": "string"}), "AVRO")) > 0
    assert client.get_versions(subject) == [1, 2]

    # no subject level: 40408, unless the caller asks for the global fallback
    assert error_code(http.get(f"/config/{bystander}")) == 40408
    fallback = http.get(f"/config/{bystander}", params={"defaultToGlobal": "true"}).json()
    assert fallback == {"compatibilityLevel": global_level}

    assert http.delete(f"/config/{subject}").json() == {"compatibilityLevel": "NONE"}
    assert http.get(f"/config/{subject}", params={"defaultToGlobal": "true"}).json() == fallback
    assert error_code(http.delete(f"/config/{subject}")) == 40401


@pytest.mark.stack
def test_global_level_can_be_changed(http):
    before = http.get("/config").json()["compatibilityLevel"]
    try:
        assert http.put("/config", json={"compatibility": "full"}).json() == {"compatibility": "FULL"}
        assert http.get("/config").json() == {"compatibilityLevel": "FULL"}
    finally:
        http.put("/config", json={"compatibility": before})
    assert http.get("/config").json() == {"compatibilityLevel": before}


@pytest.mark.stack
@pytest.mark.parametrize(
    ("level", "history", "candidate", "accepted"),
    [
        ("FORWARD", [[A]], [A, B_REQUIRED], True),
        ("FORWARD", [[A, B_REQUIRED]], [A], False),
        ("FULL", [[A]], [A, B_DEFAULT], True),
        ("FULL", [[A]], [A, B_REQUIRED], False),
        # v3 passes against the latest (v2, which has b) but not against v1 (which lacks b)
        ("BACKWARD", [[A], [A, B_DEFAULT]], [A, B_REQUIRED], True),
        ("BACKWARD_TRANSITIVE", [[A], [A, B_DEFAULT]], [A, B_REQUIRED], False),
        ("FULL_TRANSITIVE", [[A], [A, B_DEFAULT]], [A, B_REQUIRED], False),
        # v1 readers need b; v2 gives it a default, v3 drops it: v2 readers cope, v1 readers do not
        ("FORWARD", [[A, B_REQUIRED], [A, B_DEFAULT]], [A], True),
        ("FORWARD_TRANSITIVE", [[A, B_REQUIRED], [A, B_DEFAULT]], [A], False),
    ],
)
def test_levels_on_the_server(client, http, level, history, candidate, accepted):
    subject = new_subject()
    client.set_compatibility(subject, "NONE")
    for fields in history:
        client.register_schema(subject, Schema(record(*fields), "AVRO"))
    client.set_compatibility(subject, level)
    check = post(http, f"/compatibility/subjects/{subject}/versions", record(*candidate))
    assert check.json()["is_compatible"] is accepted
    response = post(http, f"/subjects/{subject}/versions", record(*candidate))
    assert response.status_code == (200 if accepted else 409), response.text


@pytest.mark.stack
def test_compatibility_endpoint(client, http):
    subject = new_subject()
    client.set_compatibility(subject, "BACKWARD")
    client.register_schema(subject, Schema(schemas.transaction_schema(1), "AVRO"))
    good, bad = (
        Schema(schemas.transaction_schema(2), "AVRO"),
        Schema(record(A, B_REQUIRED, name="Transaction"), "AVRO"),
    )

    assert client.test_compatibility(subject, good) is True
    assert client.test_compatibility(subject, bad, version=1) is False
    assert client.test_compatibility_all_versions(subject, good) is True
    assert client.test_compatibility_all_versions(subject, bad) is False

    verbose = http.post(
        f"/compatibility/subjects/{subject}/versions/latest",
        params={"verbose": "true"},
        json=bad.to_dict(),
    ).json()
    assert verbose["is_compatible"] is False and verbose["messages"]
    quiet = http.post(f"/compatibility/subjects/{subject}/versions/latest", json=good.to_dict()).json()
    assert quiet == {"is_compatible": True}
    assert error_code(http.post(f"/compatibility/subjects/{subject}/versions/7", json=good.to_dict())) == 40402
    fresh = http.post(f"/compatibility/subjects/{new_subject()}/versions", json=bad.to_dict()).json()
    assert fresh["is_compatible"] is True  # nothing registered yet, nothing to break


@pytest.mark.stack
def test_soft_then_permanent_delete(client, http):
    subject = new_subject()
    name = f"Deleted{uuid.uuid4().hex[:8]}"  # a record no other test registers, so its id is ours alone
    client.set_compatibility(subject, "NONE")
    first = client.register_schema(subject, Schema(record(A, name=name), "AVRO"))
    client.register_schema(subject, Schema(record(A, B_DEFAULT, name=name), "AVRO"))
    client.register_schema(subject, Schema(record(A, B_REQUIRED, name=name), "AVRO"))

    # versions one at a time: soft, then permanent; permanent first is refused
    assert error_code(http.delete(f"/subjects/{subject}/versions/3", params={"permanent": "true"})) == 40407
    assert client.delete_version(subject, 3) == 3
    assert error_code(http.delete(f"/subjects/{subject}/versions/3")) == 40406
    assert http.get(f"/subjects/{subject}/versions").json() == [1, 2]
    assert http.get(f"/subjects/{subject}/versions", params={"deleted": "true"}).json() == [1, 2, 3]
    assert client.delete_version(subject, 3, permanent=True) == 3
    assert http.get(f"/subjects/{subject}/versions", params={"deleted": "true"}).json() == [1, 2]

    # the subject: soft hides it, ?deleted=true still shows it, permanent removes it
    assert error_code(http.delete(f"/subjects/{subject}", params={"permanent": "true"})) == 40405
    assert client.delete_subject(subject) == [1, 2]
    assert subject not in client.get_subjects()
    assert subject in client.get_subjects(deleted=True)
    assert error_code(http.get(f"/subjects/{subject}/versions")) == 40401
    assert error_code(http.delete(f"/subjects/{subject}")) == 40404
    assert http.get(f"/schemas/ids/{first}/subjects").json() == []
    assert http.get(f"/schemas/ids/{first}/subjects", params={"deleted": "true"}).json() == [subject]
    assert client.delete_subject(subject, permanent=True) == [1, 2]
    assert subject not in client.get_subjects(deleted=True)
    assert error_code(http.delete(f"/subjects/{subject}")) == 40401

    # schemas outlive subjects: old messages still resolve, and the text keeps its id
    assert json.loads(http.get(f"/schemas/ids/{first}").json()["schema"]) == json.loads(record(A, name=name))
    again = post(http, f"/subjects/{subject}/versions", record(A, name=name))
    assert again.json() == {"id": first}
    assert http.get(f"/subjects/{subject}/versions").json() == [1]


@pytest.mark.stack
def test_avro_serde_round_trip(stack, client):
    topic = f"test-registry-{uuid.uuid4().hex[:10]}"
    context = SerializationContext(topic, MessageField.VALUE)
    transaction = {
        "transaction_id": str(uuid.uuid4()),
        "event_time": datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC),
        "bank_id": "bank-a",
        "customer_id": "C000042",
        "card_token": "ab" * 32,
        "merchant_id": "M0001",
        "terminal_id": "T0001",
        "mcc": "5411",
        "amount_minor": 1999,
        "currency": "EUR",
        "channel": "ECOM",
        "country": "DE",
        "lat": None,
        "lon": None,
        "device_id": "dev-1",
    }
    serializer = AvroSerializer(client, schemas.transaction_schema(2))
    payload = serializer(transaction, context)
    assert payload[0] == 0  # Confluent wire format: magic byte, then the 4-byte schema id

    schema_id = int.from_bytes(payload[1:5], "big")
    assert client.get_latest_version(f"{topic}-value").schema_id == schema_id
    # a separate client, so the id is resolved through the registry and not the serializer's cache
    deserializer = AvroDeserializer(SchemaRegistryClient(stack.registry_conf()))
    assert deserializer(payload, context) == transaction


@pytest.mark.stack
def test_concurrent_registrations_agree(stack):
    subject, text = new_subject(), record(A, {"name": "n", "type": "long", "default": 0}, name="Race")
    ids: list[int] = []

    def register() -> None:
        with httpx.Client(base_url=stack.registry, auth=stack.registry_credentials(), timeout=30) as http:
            ids.append(post(http, f"/subjects/{subject}/versions", text).json()["id"])

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert httpx.get(f"{stack.registry}/subjects/{subject}/versions").json() == [1]


@pytest.mark.stack
def test_ids_survive_a_new_registry_process_on_the_same_database(stack, http):
    subject = new_subject()
    schema_id = post(http, f"/subjects/{subject}/versions", record(A, name="Durable")).json()["id"]
    # a second registry instance on the same database, started in-process (as a restart would)
    with TestClient(create_app(stack.postgres_dsn)) as other:
        assert other.get(f"/subjects/{subject}/versions/latest").json()["id"] == schema_id
        assert other.post(f"/subjects/{subject}/versions", json={"schema": record(A, name="Durable")}).json() == {
            "id": schema_id
        }
