"""Registry auth (services/registry/auth.py): changes need credentials, reads only when configured, and every
client rtfd runs passes them (Settings.registry_conf). First the rules in-process, then the real registry."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from starlette.testclient import TestClient

from rtfd.config import Settings
from services.registry import create_app
from services.registry.auth import BasicAuth, is_change

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
SCHEMA = json.dumps({"type": "record", "name": "AuthProbe", "fields": [{"name": "a", "type": "string"}]})


def subject() -> str:
    return f"test-auth-{uuid.uuid4().hex[:10]}-value"


@pytest.mark.parametrize(("method", "path", "change"), [
    ("GET", "/subjects", False),
    ("GET", "/schemas/ids/1", False),
    ("POST", "/subjects/s-value", False),  # lookup
    ("POST", "/compatibility/subjects/s-value/versions/latest", False),
    ("POST", "/subjects/s-value/versions", True),
    ("PUT", "/config", True),
    ("PUT", "/mode/s-value", True),
    ("DELETE", "/subjects/s-value", True),
    ("DELETE", "/config/s-value", True),
    ("POST", "/anything/else", True),  # deny by default
])
def test_what_counts_as_a_change(method, path, change):
    assert is_change(method, path) is change


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize(("header", "problem"), [
    (None, "credentials required"),
    (b"Bearer abc", "unsupported authorization scheme"),
    (b"Basic !!!notbase64", "malformed"),
    (b"Basic " + base64.b64encode(b"no-colon"), "malformed"),
    (basic("rtfd", "wrong"), "invalid user name or password"),
    (basic("other", "s3cret-pw"), "invalid user name or password"),
])
def test_bad_credentials_are_named(header, problem):
    assert problem in BasicAuth("rtfd", "s3cret-pw").problem(header)
    assert BasicAuth("rtfd", "s3cret-pw").problem(basic("rtfd", "s3cret-pw")) is None


def test_registry_user_with_a_colon_is_rejected():
    with pytest.raises(ValueError, match="RTFD_REGISTRY_USER"):
        Settings(registry_user="a:b", _env_file=None)


def test_credentials_go_to_the_native_registry_only(tmp_path):
    native = Settings(state_dir=tmp_path, port_offset=7, _env_file=None)
    user, password = native.registry_credentials()
    assert native.registry_conf()["basic.auth.user.info"] == f"{user}:{password}"
    same = Settings(state_dir=tmp_path, port_offset=7, registry_url=native.native_registry + "/", _env_file=None)
    assert same.registry_credentials() == (user, password)
    elsewhere = Settings(state_dir=tmp_path, registry_url="http://registry.example:8081", _env_file=None)
    assert elsewhere.registry_credentials() is None and "basic.auth.user.info" not in elsewhere.registry_conf()
    given = Settings(state_dir=tmp_path, registry_url="http://registry.example:8081", registry_user="svc",
                     registry_password="from-env", _env_file=None)
    assert given.registry_conf()["basic.auth.user.info"] == "svc:from-env"


# --- the app in-process, on the stack's PostgreSQL ----------------------------------------------------------
@pytest.fixture
def app_client(stack):
    with TestClient(create_app(stack.postgres_dsn, BasicAuth("writer", "pw-1234567"))) as client:
        yield client


@pytest.mark.stack
def test_unauthenticated_change_gets_a_confluent_style_401(app_client):
    s = subject()
    response = app_client.post(f"/subjects/{s}/versions", json={"schema": SCHEMA})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(MEDIA_TYPE)
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.json() == {"error_code": 40101, "message": "Unauthorized: credentials required: send HTTP "
                               "basic auth (basic.auth.user.info = user:password)"}
    assert app_client.put("/config", json={"compatibility": "NONE"}).status_code == 401
    assert app_client.delete(f"/subjects/{s}").status_code == 401
    # nothing was registered
    assert app_client.get(f"/subjects/{s}/versions").status_code == 404


@pytest.mark.stack
def test_wrong_password_is_refused_even_for_open_reads(app_client):
    response = app_client.get("/subjects", auth=("writer", "nope"))
    assert response.status_code == 401 and "invalid user name or password" in response.json()["message"]


@pytest.mark.stack
def test_authenticated_changes_work_and_reads_are_open(app_client):
    s = subject()
    registered = app_client.post(f"/subjects/{s}/versions", json={"schema": SCHEMA}, auth=("writer", "pw-1234567"))
    assert registered.status_code == 200
    assert app_client.get(f"/subjects/{s}/versions").json() == [1]
    assert app_client.post(f"/subjects/{s}", json={"schema": SCHEMA}).json()["id"] == registered.json()["id"]


@pytest.mark.stack
def test_reads_can_require_credentials_too(stack):
    with TestClient(create_app(stack.postgres_dsn, BasicAuth("writer", "pw-1234567", protect_reads=True))) as c:
        assert c.get("/subjects").status_code == 401
        assert c.post(f"/subjects/{subject()}", json={"schema": SCHEMA}).status_code == 401
        assert c.get("/subjects", auth=("writer", "pw-1234567")).status_code == 200


# --- the real registry of the stack -------------------------------------------------------------------------
@pytest.mark.stack
def test_stack_registry_refuses_anonymous_registration(stack):
    response = httpx.post(f"{stack.registry}/subjects/{subject()}/versions", json={"schema": SCHEMA}, timeout=10)
    assert response.status_code == 401
    assert "credentials required" in response.json()["message"]
    anonymous = SchemaRegistryClient({"url": stack.registry})
    with pytest.raises(SchemaRegistryError) as failure:
        anonymous.register_schema(subject(), Schema(SCHEMA, "AVRO"))
    assert failure.value.http_status_code == 401
    assert anonymous.get_subjects() is not None  # reads stay open by default


@pytest.mark.stack
def test_stack_clients_register_with_their_settings(stack):
    client = SchemaRegistryClient(stack.registry_conf())
    s = subject()
    schema_id = client.register_schema(s, Schema(SCHEMA, "AVRO"))
    assert client.get_latest_version(s).schema_id == schema_id
