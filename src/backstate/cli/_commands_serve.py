"""``backstate serve`` (the HTTP API on a store) and ``backstate dev`` (a server on a
SQLite file that deploys a folder's machine files and redeploys them as they change)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from backstate.client import default_credentials_path

from ._app import Commands, Context
from ._args import CliError, positive_int
from ._files import machine_file, machine_slug
from ._output import Output

DEFAULT_PORT = 8780
DEFAULT_GRACE = 10.0  # backstate.server.DEFAULT_GRACE, without importing the server
DEFAULT_STEP_TIMEOUT = 90.0  # the runtime's, without importing it
DEV_DB = "backstate-dev.db"
NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")  # the API's names, secrets' included
DEV_REFERENCE_PREFIX = "dev-"  # + the file's sha256: how dev knows a version is current
# `dev` serves pages under development on this machine, on any port.
DEV_CORS_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?"


def register(commands: Commands) -> None:
    serve = commands.top(
        "serve",
        "run the HTTP API on a SQLite file",
        run_serve,
        epilog="example: backstate serve --store postgresql://postgres@127.0.0.1/backstate --deploy machines/orders.py",
        common=False,
    )
    serve.add_argument("--db", default="backstate.db", help="SQLite file (created if missing)")
    serve.add_argument(
        "--store",
        help="store URL instead of --db: postgresql://user@host/dbname or sqlite:///path",
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="the port to listen on")
    serve.add_argument(
        "--node-url",
        help="with a PostgreSQL store: the URL other nodes forward requests to"
        " (default http://HOST:PORT)",
    )
    serve.add_argument(
        "--deploy", action="append", default=[], type=Path, help="machine file to deploy"
    )
    serve.add_argument(
        "--metrics-port",
        type=positive_int,
        metavar="PORT",
        help="serve Prometheus metrics on this port (off by default)",
    )
    serve.add_argument("--metrics-host", default="127.0.0.1", help="where the metrics port listens")
    serve.add_argument(
        "--max-body-bytes",
        type=positive_int,
        metavar="N",
        help="refuse larger request bodies with 413 payload-too-large (default 1,000,000)",
    )
    serve.add_argument(
        "--idempotency-retention",
        type=positive_int,
        metavar="SECONDS",
        help="how long an Idempotency-Key is remembered (default 86400: 24 hours)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin (https://app.example.com, or * for any) that may call the"
        " API and open /rt; repeatable (default: none but the server's own)",
    )
    serve.add_argument(
        "--allow-private-jwks",
        action="store_true",
        help="let identity providers' jwksUrl reach loopback, private and link-local"
        " addresses (refused by default: anyone can make the server fetch it)",
    )
    serve.add_argument(
        "--credentials",
        type=Path,
        default=default_credentials_path(),
        help="where the first start writes the admin key",
    )
    serve.add_argument(
        "--secrets-key",
        type=Path,
        metavar="FILE",
        help="the key sealing the orgs' secrets, made on the first start (default:"
        " secrets.key beside --credentials; BACKSTATE_SECRETS_KEY overrides it)",
    )
    _add_process_options(serve)

    dev = commands.top(
        "dev",
        "run a server on a SQLite file in FOLDER, deploy its machine files, and redeploy "
        "each as a new version when it changes",
        run_dev,
        epilog="example: backstate dev machines/ --port 8787",
        common=False,
    )
    dev.add_argument("folder", nargs="?", default=".", metavar="FOLDER", help="default: .")
    dev.add_argument("--db", type=Path, help=f"SQLite file (default: FOLDER/{DEV_DB})")
    dev.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    dev.add_argument("--port", type=int, default=DEFAULT_PORT, help="the port to listen on")
    dev.add_argument(
        "--credentials",
        type=Path,
        default=default_credentials_path(),
        help="where to write the API's address and admin key (other commands read it)",
    )
    dev.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME",
        help="set the org's secret NAME to the environment variable NAME at start"
        " (repeatable; a deployed server's are set with `backstate secrets set`)",
    )
    _add_process_options(dev)


def _add_process_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backfill-batch",
        type=int,
        default=100,
        metavar="N",
        help="how many instances an index backfill indexes per transaction (default 100)",
    )
    parser.add_argument(
        "--backfill-pause",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long an index backfill rests between two transactions, to spare a busy"
        " store (default 0)",
    )
    parser.add_argument(
        "--step-timeout",
        type=float,
        default=DEFAULT_STEP_TIMEOUT,
        metavar="SECONDS",
        help="how long a request waits for its instance to settle, and a service may run,"
        f" before the service is stopped with a Timeout error (default {DEFAULT_STEP_TIMEOUT:g})",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="the server's own log lines to standard error from this level (default info);"
        " what machine code prints or logs goes to its instances' logs",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="at SIGTERM, how long requests in flight may finish before the ones still"
        f" waiting get 503 shutting-down (default {DEFAULT_GRACE:g})",
    )
    parser.add_argument(
        "--trusted",
        action="store_true",
        help="run machine code inside the server process (one team's own server); by"
        " default it runs in sandboxed worker processes, one set per org (docs/security.md)",
    )
    parser.add_argument(
        "--sandbox-dir",
        type=Path,
        metavar="DIR",
        help="where sandboxed workers keep each org's scratch folder (default: beside the"
        " SQLite file, or ./backstate-sandbox)",
    )
    parser.add_argument(
        "--worker-memory",
        type=positive_int,
        default=256,
        metavar="MB",
        help="address space of one sandboxed worker; past it only that worker dies (default 256)",
    )
    parser.add_argument(
        "--worker-cpu",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="CPU time one transition (guard, assign, authorizer, migration, HTTP-API"
        " handler) may take in a sandboxed worker; past it the event is refused with"
        " 408 user-code-timeout (default 1)",
    )
    parser.add_argument(
        "--egress-allow",
        action="append",
        default=[],
        metavar="RULE",
        help="what sandboxed services and actions may reach, through the server's proxy:"
        " [ORG=]HOST[:PORT], HOST a name (*.example.com for its subdomains; names that"
        " resolve to private addresses are refused) or an IP address; repeatable;"
        " default: nothing",
    )
    parser.add_argument(
        "--workers-per-org",
        type=positive_int,
        default=1,
        metavar="N",
        help="sandboxed workers running each org's transitions (default 1)",
    )


def _sandbox(args: argparse.Namespace, db: Path | None) -> Any:
    """The sandbox the options ask for (None with --trusted), checked to work here."""
    if args.trusted:
        return None
    from backstate.sandbox import Limits, Rule, RuleError, Sandbox, SandboxUnavailable
    from backstate.sandbox._jail import exposed

    try:
        rules = [Rule.parse(rule) for rule in args.egress_allow]
    except RuleError as exc:
        raise CliError(f"--egress-allow: {exc}", "invalid-option") from None

    if not 0 < args.worker_cpu <= 600:
        raise CliError("--worker-cpu must be more than 0 and at most 600 seconds", "invalid-option")
    root = args.sandbox_dir or (
        db.with_name(db.name + ".sandbox") if db is not None else Path("backstate-sandbox")
    )
    limits = Limits(
        memory_bytes=args.worker_memory * 1024 * 1024,
        cpu_seconds=args.worker_cpu,
        workers_per_org=args.workers_per_org,
    )
    if db is not None and exposed(db):
        raise CliError(
            f"{db} is inside what sandboxed workers can read (the Python installation or"
            " virtual environment): keep the store elsewhere",
            "store-exposed",
        )
    sandbox = Sandbox(root.resolve(), limits, rules)
    try:
        landlock = sandbox.check()
    except SandboxUnavailable as exc:
        raise CliError(
            f"machine code cannot run sandboxed on this host: {exc}. Install what is missing,"
            " or pass --trusted to run it inside the server (for a single team)",
            "sandbox-unavailable",
        ) from None
    layers = f"Landlock ABI {landlock}" if landlock else "no Landlock in this kernel"
    print(f"machine code runs in sandboxed workers (bubblewrap, seccomp, {layers})")
    return sandbox


# -- serve -----------------------------------------------------------------------------------------


def run_serve(context: Context, args: argparse.Namespace) -> int:
    from backstate.machine import MachineModuleError
    from backstate.runtime import log_to_stderr
    from backstate.server import Backend, Serving

    _check_grace(args.shutdown_grace)
    _check_step_timeout(args.step_timeout)
    _check_backfill(args)
    log_to_stderr(args.log_level)

    api = f"http://{args.host}:{args.port}"
    limits = {} if args.max_body_bytes is None else {"max_body_bytes": args.max_body_bytes}
    if args.idempotency_retention is not None:
        limits["idempotency_retention"] = args.idempotency_retention
    sandbox = _sandbox(args, None if args.store else Path(args.db))
    backend = Backend(
        args.store or args.db,
        node_url=args.node_url or api,
        sandbox=sandbox,
        allow_private_jwks=args.allow_private_jwks,
        secrets_key=args.secrets_key or args.credentials.parent / "secrets.key",
        step_timeout=args.step_timeout,
        backfill_batch=args.backfill_batch,
        backfill_pause=args.backfill_pause,
        **limits,
    )
    created = backend.ensure_admin()
    if created is not None:
        _write_credentials(args.credentials, api, created.org_id, created.key_id, created.secret)
        print(
            f"created org {created.org_id} and admin key {created.key_id}; credentials in {args.credentials}"
        )
    org_id = backend.control.orgs()[0].id
    with backend.control.deploying():
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
                asyncio.run(backend.deploy_file(org_id, path))
            except MachineModuleError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"deployed {path} as machine {slug!r}")
    if args.metrics_port is not None:
        from backstate.server import serve_metrics

        serve_metrics(backend, args.metrics_port, args.metrics_host)
        print(f"metrics on http://{args.metrics_host}:{args.metrics_port}/metrics")
    print(f"backstate API on {api}")
    print(f"dashboard on {api}/dashboard/ (sign in with a key)", flush=True)
    config = _uvicorn_config(backend, args, cors_origins=args.cors_origin)
    Serving(config, backend, args.shutdown_grace).run()
    return 0


def _check_grace(grace: float) -> None:
    if not 0 <= grace <= 3600:
        raise CliError("--shutdown-grace must be between 0 and 3600 seconds", "invalid-option")


def _check_backfill(args: argparse.Namespace) -> None:
    if not 1 <= args.backfill_batch <= 10_000:
        raise CliError("--backfill-batch must be from 1 to 10000", "invalid-option")
    if not 0 <= args.backfill_pause <= 3600:
        raise CliError("--backfill-pause must be between 0 and 3600 seconds", "invalid-option")


def _check_step_timeout(seconds: float) -> None:
    if not 0 < seconds <= 86400:
        raise CliError(
            "--step-timeout must be more than 0 and at most 86400 seconds", "invalid-option"
        )


def _uvicorn_config(backend: Any, args: argparse.Namespace, **app_options: Any) -> Any:
    import uvicorn

    from backstate.server import create_app, uvicorn_options

    options = uvicorn_options(args.host, args.port, args.shutdown_grace)
    return uvicorn.Config(create_app(backend, tune_gc=True, **app_options), **options)


def _write_credentials(path: Path, api: str, org_id: str, key_id: str, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"apiHost": api, "orgId": org_id, "keyId": key_id, "secret": secret}, indent=2)
    )
    path.chmod(0o600)


# -- dev -------------------------------------------------------------------------------------------


def run_dev(context: Context, args: argparse.Namespace) -> int:
    from backstate.runtime import log_to_stderr
    from backstate.server import Backend, Serving

    _check_grace(args.shutdown_grace)
    _check_step_timeout(args.step_timeout)
    _check_backfill(args)
    log_to_stderr(args.log_level)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder", "not-a-folder")
    _check_port(args.host, args.port)
    db = args.db or folder / DEV_DB
    backend = Backend(
        db,
        sandbox=_sandbox(args, Path(db)),
        secrets_key=args.credentials.parent / "secrets.key",
        step_timeout=args.step_timeout,
        backfill_batch=args.backfill_batch,
        backfill_pause=args.backfill_pause,
    )
    api = f"http://{args.host}:{args.port}"
    key_id, secret = _dev_credentials(backend, api, args.credentials)
    _set_secrets_from_environment(backend, args.secret)
    config = _uvicorn_config(backend, args, cors_origin_regex=DEV_CORS_ORIGINS)
    server = Serving(config, backend, args.shutdown_grace)
    dev = Dev(context.output, folder, api, key_id, secret)
    asyncio.run(dev.run(server, args.credentials))
    return 0


def _check_port(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(
                f"cannot listen on {host}:{port} ({exc.strerror}): is another server there? "
                "Pass --port",
                "port-in-use",
            ) from None


def _dev_credentials(backend: Any, api: str, path: Path) -> tuple[str, str]:
    """The admin key of the dev database, written with the dev API's address to the
    credentials file, so that every other command talks to this server."""
    from backstate.auth import Scope
    from backstate.client import load_credentials

    created = backend.ensure_admin()
    org_id = backend.control.orgs()[0].id
    if created is not None:
        key_id, secret = created.key_id, created.secret
    else:
        key = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            stored = load_credentials(path)
            key = backend.control.key(stored.key_id)
        if key is None or key.org_id != org_id:
            every_scope = {scope.value for scope in Scope}
            key = next(k for k in backend.control.keys(org_id) if every_scope <= set(k.scopes))
        key_id, secret = key.id, key.secret
    _write_credentials(path, api, org_id, key_id, secret)
    return key_id, secret


def _set_secrets_from_environment(backend: Any, names: list[str]) -> None:
    """``--secret NAME``: the dev org's secret NAME is the variable's value, sealed and
    stored as ``PUT /secrets/NAME`` would (read from the environment, never from the
    command line, which other users of the host can see)."""
    import time

    from backstate.store import SecretRow

    org_id = backend.control.orgs()[0].id
    for name in names:
        value = os.environ.get(name)
        if value is None:
            raise CliError(f"--secret {name}: the environment variable is not set", "no-value")
        if not NAME.fullmatch(name):
            raise CliError(f"--secret {name}: not a secret name", "invalid-name")
        sealed = backend.secret_box.seal(org_id, name, value)
        backend.control.put_secret(SecretRow(org_id, name, sealed, int(time.time() * 1000)))
    backend.secrets_changed()


def dashboard_url(api: str, key_id: str, secret: str) -> str:
    """The dashboard; on a loopback address, signed in with the dev key: the key rides in
    the URL's fragment, which the browser never sends, and the page wipes at once (the
    same key is in the credentials file beside it)."""
    host = urlsplit(api).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return f"{api}/dashboard/"
    return f"{api}/dashboard/#signin?{urlencode({'keyId': key_id, 'secret': secret})}"


def _home_relative(path: Path) -> str:
    """``~/...`` for a path in the user's home, as people write it."""
    try:
        return f"~/{path.resolve().relative_to(Path.home().resolve())}"
    except ValueError:
        return str(path)


class Dev:
    """Deploys a folder's machine files through the API, then redeploys each file that
    changes. A file's version reference is ``dev-<sha256 prefix>``, so a restart skips
    files whose current version is already that source."""

    def __init__(self, output: Output, folder: Path, api: str, key_id: str, secret: str) -> None:
        self.output = output
        self.folder = folder
        self.api = api
        self.key_id = key_id
        self.secret = secret

    async def run(self, server: Any, credentials: Path) -> None:
        from backstate.client import AsyncClient, KeyAuth

        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                await serving
                raise CliError(f"the server did not start on {self.api}", "server-failed")
            await asyncio.sleep(0.05)
        async with AsyncClient(self.api, auth=KeyAuth(self.key_id, self.secret)) as client:
            for path in sorted(self.folder.glob("*.py")):
                await self.deploy(client, path, changed=False)
            self.output.line(f"backstate API on {self.api}")
            self.output.line(f"dashboard on {dashboard_url(self.api, self.key_id, self.secret)}")
            self.output.line(f"credentials in {_home_relative(credentials)}")
            self.output.line(f"watching {self.folder} for changes (Ctrl-C to stop)")
            watching = asyncio.create_task(self.watch(client))
            try:
                await serving
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching

    async def watch(self, client: Any) -> None:
        from watchfiles import Change, awatch

        folder = self.folder.resolve()

        def machine_files(change: Change, path: str) -> bool:
            return path.endswith(".py") and Path(path).parent == folder

        async for changes in awatch(folder, watch_filter=machine_files, recursive=False):
            for change, changed in sorted(changes, key=lambda c: c[1]):
                path = self.folder / Path(changed).name
                if change == Change.deleted:
                    self.output.note(f"{path} was deleted; its machine stays deployed")
                elif path.exists():
                    await self.deploy(client, path, changed=True)

    async def deploy(self, client: Any, path: Path, *, changed: bool) -> None:
        from backstate.client import ApiError, NotFound
        from backstate.machine import MachineModuleError

        if path.name.startswith("_"):
            return  # __init__.py and private helpers are not machines
        try:
            source, module = machine_file(path)
        except MachineModuleError as exc:
            if exc.code == "missing-export" and "`machine`" in exc.message:
                self.output.note(f"skipped {path}: it defines no `machine`")
            else:
                where = f"{exc.filename}:{exc.line}" if exc.line else exc.filename
                self.output.error(f"{where}: {exc.message}", exc.code)
            return
        except CliError as exc:
            self.output.error(exc.message, exc.code)
            return
        slug = machine_slug(path)
        reference = DEV_REFERENCE_PREFIX + hashlib.sha256(source.encode()).hexdigest()[:12]
        try:
            try:
                current = (await client.machines.get(slug)).current_version
            except NotFound:
                await client.machines.create(slug, indexes=list(module.index_selectors or {}))
                current = None
            if current is not None and current.client_info == reference:
                self.output.line(f"{path} is deployed as {slug} (version {current.id})")
                return
            version = await client.machine_versions.create(
                slug, source, client_info=reference, make_current=True
            )
        except ApiError as exc:
            self.output.error(f"{path}: {exc.message}", exc.code)
            return
        verb = "redeployed" if changed else "deployed"
        self.output.line(f"{verb} {path} as {slug} (version {version})")
