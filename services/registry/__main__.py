"""Run the schema registry: `python -m services.registry [--host H] [--port P] [--dsn DSN]`.

Defaults come from rtfd.config.Settings: the PostgreSQL DSN and the registry port (plus the port offset).
"""

from __future__ import annotations

import argparse
import logging

import uvicorn
from psycopg.conninfo import conninfo_to_dict

from rtfd import topology
from rtfd.config import Settings
from services.registry.app import create_app
from services.registry.auth import BasicAuth

log = logging.getLogger("services.registry")


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m services.registry", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=settings.port(topology.REGISTRY_PORT))
    parser.add_argument("--dsn", help="PostgreSQL connection string (default: RTFD_PG_DSN or the native cluster)")
    args = parser.parse_args(argv)
    dsn = args.dsn or settings.postgres_dsn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = conninfo_to_dict(dsn)  # never log the DSN itself: it may carry the password
    log.info(
        "schema registry on http://%s:%d, state in PostgreSQL %s:%s/%s",
        args.host,
        args.port,
        db.get("host", "localhost"),
        db.get("port", 5432),
        db.get("dbname", ""),
    )
    # the native registry always has credentials (generated if not given); an unset password here means
    # someone runs it by hand against an external registry URL: then changes need RTFD_REGISTRY_PASSWORD
    credentials = settings.registry_credentials()
    if credentials is None:
        raise SystemExit("the registry needs RTFD_REGISTRY_PASSWORD when RTFD_REGISTRY_URL is set")
    auth = BasicAuth(*credentials, protect_reads=settings.registry_read_auth)
    log.info("changes need basic auth as %r; reads %s", auth.user,
             "too" if auth.protect_reads else "are open (RTFD_REGISTRY_READ_AUTH=true to close them)")
    # access_log off and log_level warning: one startup line, then only problems
    uvicorn.run(create_app(dsn, auth), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
