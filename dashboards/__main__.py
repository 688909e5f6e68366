"""Serve the dashboard: `python -m dashboards [--dev] [--port N]` (component `dashboard` of `rtfd up`).

Listens on 127.0.0.1:5006 + RTFD_PORT_OFFSET. Outside dev mode every page needs a login (dashboards.auth);
`python -m dashboards hash-password` prints a value for RTFD_DASHBOARD_PASSWORD_HASH.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys


def serve(dev: bool = False, port: int | None = None, address: str | None = None) -> None:
    import panel as pn

    from dashboards.app import create_app
    from dashboards.auth import PasswordAuthProvider
    from dashboards.config import DashboardSettings
    from rtfd.config import Settings

    settings, dash = Settings(), DashboardSettings()
    if dev:
        dash.dev = True
    dash.validate_for_serving()
    port = port or dash.listen_port(settings)
    address = address or dash.address
    origins = sorted({f"localhost:{port}", f"127.0.0.1:{port}", f"{address}:{port}"})
    auth = {}
    if dash.login_required:
        auth = {"auth_provider": PasswordAuthProvider(dash.check_password),
                "cookie_secret": dash.cookie_secret_value(settings)}  # fmt: skip
    pn.extension("tabulator", notifications=False)
    print(  # noqa: T201 - the supervisor's log shows where it listens
        f"rtfd dashboard on http://{address}:{port}/ ({'dev mode, no login' if dash.dev else 'login required'})",
        flush=True,
    )
    pn.serve(
        {"/": create_app}, port=port, address=address, websocket_origin=origins, show=False,
        title="rtfd fraud dashboard", liveness=True, **auth,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="no login (also RTFD_DASHBOARD_DEV=1)")
    parser.add_argument("--port", type=int, help="default: 5006 + RTFD_PORT_OFFSET (or RTFD_DASHBOARD_PORT)")
    parser.add_argument("--address", help="default: 127.0.0.1 (RTFD_DASHBOARD_ADDRESS)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("hash-password", help="read a password, print its hash for RTFD_DASHBOARD_PASSWORD_HASH")
    args = parser.parse_args(argv)
    if args.command == "hash-password":
        from dashboards.config import hash_password

        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        print(hash_password(password))  # noqa: T201
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(dev=args.dev, port=args.port, address=args.address)


if __name__ == "__main__":
    main()
