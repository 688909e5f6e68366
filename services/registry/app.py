"""The registry's HTTP API: Confluent Schema Registry routes over Starlette, state in services.registry.store.

Handlers are thin: parse the request, call the store in Starlette's threadpool (psycopg is used
synchronously), answer Confluent-shaped JSON. Unknown routes answer a Confluent-style 404 body because
confluent-kafka probes newer endpoints (GET /associations/...) and falls back only on a 404.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from http import HTTPStatus

import avro.schema
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.registry import compat, errors
from services.registry.auth import AuthMiddleware, BasicAuth
from services.registry.errors import RegistryError
from services.registry.store import Store

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_VERSION = 2**31 - 1


class RegistryResponse(JSONResponse):
    media_type = MEDIA_TYPE


def _store(request: Request) -> Store:
    return request.app.state.store


def _flag(request: Request, name: str) -> bool:
    # confluent-kafka formats Python bools into its query strings: "True"/"False"
    return request.query_params.get(name, "false").lower() == "true"


def _text(value: str, what: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here, with a clear error, instead of failing in the store
    if "\x00" in value:
        raise errors.invalid_subject(what, "it contains a NUL character")
    return value


def _subject(request: Request, optional: bool = False) -> str | None:
    subject = request.path_params.get("subject") if optional else request.path_params["subject"]
    return None if subject is None else _text(subject, "subject")


def _version(raw: str) -> int | None:
    """A path version as an int, or None for the latest ("latest" or -1)."""
    if raw == "latest":
        return None
    try:
        version = int(raw)
    except ValueError:
        raise errors.invalid_version(raw) from None
    if version == -1:
        return None
    if not 1 <= version <= MAX_VERSION:
        raise errors.invalid_version(raw)
    return version


async def _json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise RegistryError(400, 400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RegistryError(400, 400, "Request body must be a JSON object")
    return body


async def _schema_body(request: Request) -> tuple[str, avro.schema.Schema]:
    body = await _json_body(request)
    text = body.get("schema")
    if not isinstance(text, str):
        raise errors.invalid_schema("the request needs a 'schema' string")
    schema_type = body.get("schemaType") or "AVRO"
    if str(schema_type).upper() != "AVRO":
        raise errors.invalid_schema(f"schema type {schema_type} is not supported; this registry speaks AVRO only")
    if body.get("references"):
        raise errors.invalid_schema("schema references are not supported")
    try:
        return text, compat.parse(text)
    except compat.InvalidSchema as exc:
        raise errors.invalid_schema(str(exc)) from None


def _pick(versions, subject: str, version: int | None):
    """One version of a subject's (already filtered) versions, or the Confluent 40401/40402 error."""
    if not versions:
        raise errors.subject_not_found(subject)
    if version is None:
        return versions[-1]
    for v in versions:
        if v.version == version:
            return v
    raise errors.version_not_found(subject, version)


# --- root, types, mode ------------------------------------------------------------------------------------
async def root(request: Request) -> Response:
    return RegistryResponse({})


async def schema_types(request: Request) -> Response:
    return RegistryResponse(["AVRO"])


async def mode(request: Request) -> Response:
    if request.method == "PUT":
        wanted = (await _json_body(request)).get("mode")
        if str(wanted).upper() != "READWRITE":
            raise errors.invalid_mode(wanted)
    return RegistryResponse({"mode": "READWRITE"})


async def contexts(request: Request) -> Response:
    return RegistryResponse(["."])


# --- subjects ---------------------------------------------------------------------------------------------
async def list_subjects(request: Request) -> Response:
    prefix = _text(request.query_params.get("subjectPrefix", ""), "subjectPrefix")
    subjects = await run_in_threadpool(
        _store(request).subjects, _flag(request, "deleted"), _flag(request, "deleted_only"), prefix
    )
    return RegistryResponse(subjects)


async def list_versions(request: Request) -> Response:
    subject = _subject(request)
    versions = await run_in_threadpool(_store(request).versions, subject, _flag(request, "deleted"))
    if not versions:
        raise errors.subject_not_found(subject)
    return RegistryResponse([v.version for v in versions])


async def get_version(request: Request) -> Response:
    subject = _subject(request)
    version = _version(request.path_params["version"])
    versions = await run_in_threadpool(_store(request).versions, subject, _flag(request, "deleted"))
    return RegistryResponse(_pick(versions, subject, version).body())


async def get_version_schema(request: Request) -> Response:
    subject = _subject(request)
    version = _version(request.path_params["version"])
    versions = await run_in_threadpool(_store(request).versions, subject, _flag(request, "deleted"))
    return Response(_pick(versions, subject, version).schema, media_type=MEDIA_TYPE)


async def referenced_by(request: Request) -> Response:
    return RegistryResponse([])  # references are not supported, so nothing can refer to a version


async def register(request: Request) -> Response:
    subject = _subject(request)
    text, parsed = await _schema_body(request)
    schema_id = await run_in_threadpool(_store(request).register, subject, text, parsed)
    return RegistryResponse({"id": schema_id})


async def lookup(request: Request) -> Response:
    subject = _subject(request)
    text, _ = await _schema_body(request)
    found = await run_in_threadpool(_store(request).lookup, subject, text, _flag(request, "deleted"))
    return RegistryResponse(found.body())


async def delete_subject(request: Request) -> Response:
    subject = _subject(request)
    deleted = await run_in_threadpool(_store(request).delete_subject, subject, _flag(request, "permanent"))
    return RegistryResponse(deleted)


async def delete_version(request: Request) -> Response:
    subject = _subject(request)
    version = _version(request.path_params["version"])
    deleted = await run_in_threadpool(_store(request).delete_version, subject, version, _flag(request, "permanent"))
    return RegistryResponse(deleted)


# --- schemas by id ----------------------------------------------------------------------------------------
async def _schema_by_id(request: Request) -> str:
    schema_id = request.path_params["id"]
    text = await run_in_threadpool(_store(request).schema, schema_id)
    if text is None:
        raise errors.schema_not_found(f"Schema {schema_id} not found")
    return text


async def get_schema(request: Request) -> Response:
    # ?subject= only narrows the client's cache key; ids are global, so the answer does not depend on it
    return RegistryResponse({"schema": await _schema_by_id(request)})


async def get_schema_text(request: Request) -> Response:
    return Response(await _schema_by_id(request), media_type=MEDIA_TYPE)


async def schema_subjects(request: Request) -> Response:
    usages = await run_in_threadpool(_store(request).usages, request.path_params["id"], _flag(request, "deleted"))
    return RegistryResponse(sorted({subject for subject, _ in usages}))


async def schema_versions(request: Request) -> Response:
    usages = await run_in_threadpool(_store(request).usages, request.path_params["id"], _flag(request, "deleted"))
    return RegistryResponse([{"subject": s, "version": v} for s, v in usages])


# --- config -----------------------------------------------------------------------------------------------
async def get_config(request: Request) -> Response:
    subject = _subject(request, optional=True)
    store = _store(request)
    level = await run_in_threadpool(store.compatibility, subject)
    if level is None and subject is not None:
        if not _flag(request, "defaultToGlobal"):
            raise errors.subject_config_not_found(subject)
        level = await run_in_threadpool(store.compatibility, None)
    return RegistryResponse({"compatibilityLevel": level or compat.DEFAULT_LEVEL})


async def put_config(request: Request) -> Response:
    body = await _json_body(request)
    # confluent-kafka's set_config sends ServerConfig.to_dict(), which may name the level either way
    level = body.get("compatibility") or body.get("compatibilityLevel")
    if not compat.is_level(level):
        raise errors.invalid_compatibility(level)
    level = level.upper()
    await run_in_threadpool(_store(request).set_compatibility, _subject(request, optional=True), level)
    return RegistryResponse({"compatibility": level})


async def delete_config(request: Request) -> Response:
    subject = _subject(request, optional=True)
    removed = await run_in_threadpool(_store(request).delete_compatibility, subject)
    if subject is not None and removed is None:
        raise errors.subject_not_found(subject)
    return RegistryResponse({"compatibilityLevel": removed or compat.DEFAULT_LEVEL})


# --- compatibility checks ---------------------------------------------------------------------------------
async def check_compatibility(request: Request) -> Response:
    """Against one version (path has {version}) or, per the subject's level, against all live versions."""
    subject = _subject(request)
    raw_version = request.path_params.get("version")
    version = _version(raw_version) if raw_version is not None else None
    _, parsed = await _schema_body(request)
    store = _store(request)
    level = (
        await run_in_threadpool(store.compatibility, subject)
        or await run_in_threadpool(store.compatibility, None)
        or compat.DEFAULT_LEVEL
    )
    versions = await run_in_threadpool(store.versions, subject)
    if raw_version is None or (version is None and not versions):
        # all versions per the level; a subject without versions accepts anything, as registration would
        targets = versions
    else:
        target = _pick(versions, subject, version)
        targets = [target]
        level = level.removesuffix("_TRANSITIVE")  # one named version: transitivity has nothing to add
    problems = compat.incompatibilities(level, parsed, [(v.version, compat.parse(v.schema)) for v in targets])
    body: dict = {"is_compatible": not problems}
    if _flag(request, "verbose"):
        body["messages"] = problems
    return RegistryResponse(body)


# --- errors and assembly ----------------------------------------------------------------------------------
async def _registry_error(request: Request, exc: RegistryError) -> Response:
    return RegistryResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    phrase = HTTPStatus(exc.status_code).phrase
    return RegistryResponse(
        {"error_code": exc.status_code, "message": f"HTTP {exc.status_code} {phrase}"},
        status_code=exc.status_code,
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after answering, so uvicorn logs the traceback once; no logging here.
    # 500 is retried by confluent-kafka's client, which is what we want after e.g. a PostgreSQL restart
    return RegistryResponse({"error_code": 50001, "message": "Error in the backend data store"}, status_code=500)


def _routes() -> list[Route]:
    subject = "/subjects/{subject}"
    version = subject + "/versions/{version}"
    schema = "/schemas/ids/{id:int}"
    return [
        Route("/", root),
        Route("/subjects", list_subjects),
        Route(subject, lookup, methods=["POST"]),
        Route(subject, delete_subject, methods=["DELETE"]),
        Route(subject + "/versions", list_versions),
        Route(subject + "/versions", register, methods=["POST"]),
        Route(version, get_version),
        Route(version, delete_version, methods=["DELETE"]),
        Route(version + "/schema", get_version_schema),
        Route(version + "/referencedby", referenced_by),
        Route(schema, get_schema),
        Route(schema + "/schema", get_schema_text),
        Route(schema + "/subjects", schema_subjects),
        Route(schema + "/versions", schema_versions),
        Route("/schemas/types", schema_types),
        Route("/config", get_config),
        Route("/config", put_config, methods=["PUT"]),
        Route("/config", delete_config, methods=["DELETE"]),
        Route("/config/{subject}", get_config),
        Route("/config/{subject}", put_config, methods=["PUT"]),
        Route("/config/{subject}", delete_config, methods=["DELETE"]),
        Route("/compatibility" + subject + "/versions", check_compatibility, methods=["POST"]),
        Route("/compatibility" + version, check_compatibility, methods=["POST"]),
        Route("/mode", mode, methods=["GET", "PUT"]),
        Route("/mode/{subject}", mode, methods=["GET", "PUT"]),
        Route("/contexts", contexts),
    ]


def create_app(dsn: str, auth: BasicAuth | None = None) -> Starlette:
    """The registry as an ASGI app; its tables are created (if missing) when the app starts.
    With `auth`, changes (and reads, if it says so) need its HTTP basic auth credentials."""

    @asynccontextmanager
    async def lifespan(app: Starlette):
        store = Store(dsn)
        await run_in_threadpool(store.create_tables)
        app.state.store = store
        try:
            yield
        finally:
            store.close()

    return Starlette(
        routes=_routes(),
        lifespan=lifespan,
        middleware=[Middleware(AuthMiddleware, auth=auth)] if auth is not None else [],
        exception_handlers={
            RegistryError: _registry_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
