"""HTTP basic auth for the registry: changes always need the credentials, reads only when configured.

A *change* is what alters registry state: registering a version (POST /subjects/{s}/versions), every PUT
(config, mode) and every DELETE. Looking a schema up (POST /subjects/{s}) and compatibility checks
(POST /compatibility/...) only read, as in Confluent's own access model, so they count as reads.
Missing or wrong credentials get a 401 in Confluent's error style ({"error_code", "message"}) naming the
problem, plus a WWW-Authenticate challenge. The password is compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass, field

REALM = "rtfd-schema-registry"
MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True)
class BasicAuth:
    user: str
    password: str = field(repr=False)
    protect_reads: bool = False

    def problem(self, header: bytes | None) -> str | None:
        """Why an Authorization header does not authenticate (None: it does)."""
        if not header:
            return "credentials required: send HTTP basic auth (basic.auth.user.info = user:password)"
        scheme, _, encoded = header.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return f"unsupported authorization scheme {scheme!r}; use HTTP basic auth"
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "malformed basic auth credentials: expected base64 of user:password"
        if not sep:
            return "malformed basic auth credentials: expected base64 of user:password"
        # both compared, always: the answer's timing says nothing about which one was wrong
        user_ok = hmac.compare_digest(user.encode(), self.user.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        if not (user_ok and password_ok):
            return "invalid user name or password"
        return None


def is_change(method: str, path: str) -> bool:
    """Deny by default: every method but GET/HEAD/OPTIONS changes state, except the two reading POSTs."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    if method == "POST":
        parts = path.strip("/").split("/")
        if parts[0] == "compatibility" or (parts[0] == "subjects" and len(parts) == 2):
            return False
    return True


class AuthMiddleware:
    """Pure ASGI middleware: answers 401 before the route runs, so no handler sees an unauthenticated change."""

    def __init__(self, app, auth: BasicAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needs_auth = self.auth.protect_reads or is_change(scope["method"], scope["path"])
        header = dict(scope["headers"]).get(b"authorization")
        # credentials sent on an open read are still checked: a client with a wrong password learns it early
        if needs_auth or header is not None:
            problem = self.auth.problem(header)
            if problem is not None:
                await _unauthorized(send, problem)
                return
        await self.app(scope, receive, send)


async def _unauthorized(send, problem: str) -> None:
    body = json.dumps({"error_code": 40101, "message": f"Unauthorized: {problem}"}).encode()
    await send({
        "type": "http.response.start",
        "status": 401,
        "headers": [
            (b"content-type", MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", f'Basic realm="{REALM}"'.encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})
