"""The dependency audit's own logic (rtfd.security.audit), with PyPI's answers faked: a pure unit test.
`make audit` runs it for real against PyPI."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rtfd.security import audit

PROJECTS = {
    "fresh": {"info": {"version": "2.0"}, "vulnerabilities": []},
    "leaky": {"info": {"version": "1.5"}, "vulnerabilities": [
        {"id": "PYSEC-1", "aliases": ["CVE-2026-1"], "fixed_in": ["1.6"]}]},
    "old": {"info": {"version": "9.0"}, "vulnerabilities": []},
}


def fake_pypi(request: httpx.Request) -> httpx.Response:
    name = request.url.path.split("/")[2]
    if name in PROJECTS and request.url.path.count("/") == 3:
        return httpx.Response(200, json=PROJECTS[name])
    return httpx.Response(404)


@pytest.fixture
def client():
    with httpx.Client(transport=httpx.MockTransport(fake_pypi)) as c:
        yield c


def test_pins_are_read_and_bad_lines_named(tmp_path: Path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# comment\nfresh==2.0\n\nleaky==1.5\n")
    assert audit.pins(lock) == {"fresh": "2.0", "leaky": "1.5"}
    lock.write_text("fresh>=2\n")
    with pytest.raises(ValueError, match="requirements.lock:1: not a name==version pin"):
        audit.pins(lock)


def test_latest_release_audit_reports_vulnerable_and_unaudited_pins(client):
    vulnerable, unaudited = audit.latest_release_audit(
        client, {"fresh": "2.0", "leaky": "1.5", "old": "1.0", "gone": "0.1"}, set())
    assert vulnerable == [("leaky", "1.5", "PYSEC-1", ["1.6"])]
    assert unaudited == [("gone", "0.1", None), ("old", "1.0", "9.0")]


def test_ignored_vulnerabilities_match_ids_and_aliases(client):
    assert audit.latest_release_audit(client, {"leaky": "1.5"}, {"CVE-2026-1"})[0] == []


def test_per_release_probe(client):
    assert audit.per_release_api_works(client) is False
