"""The job's JVM decoder (io.rtfd.flink.DecodeTransaction) called record by record through the Py4J gateway, so
unit tests hold it to the Python reference (flink.decode.Decoder) on the same bytes.

Its writer schemas come over HTTP, as from the registry: `SchemaIds` answers GET /schemas/ids/<id> from a dict
with the registry's JSON (404 in Confluent's form for the others) and counts the lookups. It stands in for the
registry only in these unit tests of the decoding logic; the job's integration tests use the real one.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd

from flink.decode import COLUMNS, jvm_decoder


class SchemaIds:
    def __init__(self, schemas: dict[int, str]):
        self.schemas = schemas
        self.calls: list[int] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                parts = self.path.strip("/").split("/")
                schema_id = int(parts[2]) if len(parts) == 3 and parts[:2] == ["schemas", "ids"] else None
                if schema_id is not None:
                    owner.calls.append(schema_id)
                if schema_id in owner.schemas:
                    self.answer(200, {"schema": owner.schemas[schema_id]})
                else:
                    self.answer(404, {"error_code": 40403, "message": "Schema not found"})

            def answer(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SchemaIds:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def load_job_jars() -> None:
    """The job's jars (connectors, jvm/functions) on the gateway's class path, as the job client has them."""
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    from flink.config import jvm_jars

    add_jars_to_context_class_loader([jar.as_uri() for jar in jvm_jars()])


class JvmDecoder:
    """decode(values) -> the same frame as flink.decode.Decoder.decode, from the Java function."""

    def __init__(self, registry_url: str):
        load_job_jars()
        self.function = jvm_decoder(registry_url)

    def decode(self, values) -> pd.DataFrame:
        rows = []
        for value in values:
            row = self.function.eval(None if value is None else bytearray(value))
            rows.append([row.getField(i) for i in range(len(COLUMNS))])
        return pd.DataFrame(rows, columns=list(COLUMNS)).astype(object).where(lambda f: f.notna(), None)
