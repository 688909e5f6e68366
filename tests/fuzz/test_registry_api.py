"""Fuzz the schema registry's HTTP API (services/registry) in-process on the stack's real PostgreSQL:
arbitrary JSON bodies, schema strings, subject names, versions, methods and paths. Every answer must be a
2xx or a 4xx with a Confluent-style error body ({"error_code": int, "message": str}); a 500 means the
registry failed on input it should have refused with a clear message."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from starlette.testclient import TestClient

import schemas
from services.registry import create_app
from services.registry.auth import BasicAuth

pytestmark = pytest.mark.stack
AUTH = ("fuzzer", "fuzz-password")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
subjects = st.text(min_size=1, max_size=40).filter(lambda s: s not in (".", ".."))
avro_like = st.one_of(
    st.sampled_from([schemas.transaction_schema(1), schemas.transaction_schema(2), '"string"', '"nope"', "{}",
                     '{"type": "record"}', '{"type": "record", "name": "R", "fields": [{"name": "a"}]}',
                     '{"type": "enum", "name": "E", "symbols": ["A", "A"]}', '{"type": "array"}', "[]",
                     '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}',
                     '{"type": "fixed", "name": "F", "size": -1}', '["null", "null"]']),
    json_values.map(json.dumps),
    st.text(max_size=60),
)
versions = st.one_of(st.integers(), st.sampled_from(["latest", "-1", "0", "1", "2147483648", "x", "1.5", ""]),
                     st.text(max_size=8))


@pytest.fixture(scope="module")
def registry(stack):
    with TestClient(create_app(stack.postgres_dsn, BasicAuth(*AUTH)), raise_server_exceptions=False) as client:
        yield client


def assert_clean(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400 and response.request.method != "HEAD":  # HEAD answers carry no body
        body = response.json()
        assert isinstance(body.get("error_code"), int) and isinstance(body.get("message"), str), body
        assert body["message"], body


def path(subject: str) -> str:
    return quote(subject, safe="")


@given(subjects, avro_like, st.booleans())
def test_register_and_lookup_any_schema_text(registry, subject, text, normalize):
    s = f"fuzz-{path(subject)}"
    for url in (f"/subjects/{s}/versions", f"/subjects/{s}", f"/compatibility/subjects/{s}/versions/latest",
                f"/compatibility/subjects/{s}/versions?verbose=true"):
        assert_clean(registry.post(url, json={"schema": text, "normalize": normalize}, auth=AUTH))


@given(subjects, json_values)
def test_any_json_body_anywhere(registry, subject, body):
    s = f"fuzz-{path(subject)}"
    for method, url in (("POST", f"/subjects/{s}/versions"), ("POST", f"/subjects/{s}"),
                        ("PUT", f"/config/{s}"), ("PUT", "/mode"), ("POST", f"/compatibility/subjects/{s}/versions")):
        assert_clean(registry.request(method, url, json=body, auth=AUTH))


@given(st.binary(max_size=80), st.sampled_from(["/subjects/fuzz-raw/versions", "/config/fuzz-raw", "/mode"]))
def test_bodies_that_are_not_json(registry, raw, url):
    method = "POST" if url.startswith("/subjects") else "PUT"
    assert_clean(registry.request(method, url, content=raw, auth=AUTH,
                                  headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}))


@given(subjects, versions, st.booleans(), st.booleans())
def test_any_version_and_flags(registry, subject, version, deleted, permanent):
    s, v = f"fuzz-{path(subject)}", quote(str(version), safe="")
    flags = f"?deleted={deleted}&permanent={permanent}"
    for method, url in (("GET", f"/subjects/{s}/versions/{v}{flags}"), ("GET", f"/subjects/{s}/versions/{v}/schema"),
                        ("GET", f"/subjects/{s}/versions/{v}/referencedby"),
                        ("DELETE", f"/subjects/{s}/versions/{v}{flags}"), ("DELETE", f"/subjects/{s}{flags}"),
                        ("GET", f"/schemas/ids/{v}"), ("GET", f"/schemas/ids/{v}/versions{flags}")):
        assert_clean(registry.request(method, url, auth=AUTH))


@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       st.lists(st.text(max_size=12), max_size=5), st.text(max_size=30))
def test_any_method_and_path(registry, method, segments, query):
    url = "/" + "/".join(quote(seg, safe="") for seg in segments) + "?" + quote(query, safe="=&")
    # "//x" is a network-path reference (RFC 3986 4.2): the HTTP client refuses it before any request is made,
    # so those paths are covered by test_empty_path_segments below instead
    assume(not url.startswith("//"))
    assert_clean(registry.request(method, url, auth=AUTH))
    assert_clean(registry.request(method, url))  # and without credentials: 401 for changes, never 500


def test_empty_path_segments(registry):
    """Found by the fuzzer above: paths with empty segments get a clean 404, not a 500."""
    for url in ("/subjects//versions", "/subjects/x//versions", "/config//", "/schemas/ids//", "/a//b?"):
        for method in ("GET", "POST", "DELETE"):
            assert_clean(registry.request(method, url, auth=AUTH))


NUL_DOC = '{"type": "record", "name": "R", "doc": "a\\u0000b", "fields": []}'  # valid Avro, NUL inside


def test_nul_characters_get_a_clear_422(registry):
    """Found by the fuzzers above: PostgreSQL text cannot hold NUL, which used to surface as a 500."""
    for response in (registry.get("/subjects/a%00b/versions"), registry.get("/subjects?subjectPrefix=%00"),
                     registry.put("/config/a%00b", json={"compatibility": "NONE"}, auth=AUTH)):
        assert response.status_code == 422 and response.json()["error_code"] == 42208, response.text
        assert "NUL" in response.json()["message"]
    # inside a schema an escaped NUL is harmless: the stored text and canonical form keep the escape
    assert registry.post("/subjects/fuzz-nul/versions", json={"schema": NUL_DOC}, auth=AUTH).status_code == 200
