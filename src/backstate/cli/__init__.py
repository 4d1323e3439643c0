"""The ``backstate`` command. For now: ``backstate serve``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_PORT = 8780


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="backstate", description="Statecharts as a durable backend."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API on a SQLite file")
    serve.add_argument("--db", default="backstate.db", help="SQLite file (created if missing)")
    serve.add_argument(
        "--store",
        help="store URL instead of --db: postgresql://user@host/dbname or sqlite:///path",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument(
        "--deploy", action="append", default=[], type=Path, help="machine file to deploy"
    )
    serve.add_argument(
        "--credentials",
        type=Path,
        default=Path(os.environ.get("BACKSTATE_HOME", Path.home() / ".backstate"))
        / "credentials.json",
        help="where the first start writes the admin key",
    )
    args = parser.parse_args(argv)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from backstate.machine import MachineModuleError
    from backstate.server import Backend, create_app

    backend = Backend(args.store or args.db)
    api = f"http://{args.host}:{args.port}"
    created = backend.ensure_admin()
    if created is not None:
        args.credentials.parent.mkdir(parents=True, exist_ok=True)
        args.credentials.write_text(
            json.dumps(
                {
                    "apiHost": api,
                    "orgId": created.org_id,
                    "keyId": created.key_id,
                    "secret": created.secret,
                },
                indent=2,
            )
        )
        args.credentials.chmod(0o600)
        print(
            f"created org {created.org_id} and admin key {created.key_id}; credentials in {args.credentials}"
        )
    org_id = backend.control.orgs()[0].id
    for path in args.deploy:
        slug = path.stem.replace("_", "-")
        current = backend.control.machine(org_id, slug)
        source = path.read_text(encoding="utf-8")
        versions = (
            {v.id: v.source for v in backend.control.versions(org_id, slug)} if current else {}
        )
        if current is not None and versions.get(current.current_version or "") == source:
            continue
        try:
            backend.deploy_file(org_id, path)
        except MachineModuleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"deployed {path} as machine {slug!r}")
    print(f"backstate API on {api}", flush=True)
    uvicorn.run(
        create_app(backend),
        host=args.host,
        port=args.port,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
    )
    return 0
