"""The ASGI app: State Backed's REST API and /rt WebSocket over a Backend."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Send
from starlette.types import Scope as ASGIScope
from starlette.websockets import WebSocket

from backstate.auth import AuthError, Principal, Scope, require_scope
from backstate.chart._unhandled import sentence
from backstate.runtime import Conflict
from backstate.store import StoreError

from . import _gc, _serving
from ._backend import Backend, runtime_name, state_body
from ._dashboard import dashboard_routes
from ._dead_letters import dead_letter_routes
from ._diagrams import diagram_routes
from ._forward import Forwarder
from ._hot import HotRoutes
from ._http import (
    HANDLED_ERRORS,
    ApiError,
    JSONResponse,
    Requests,
    caller_message,
    check_int,
    check_name,
    error_response,
    handle_error,
    hmac_b64,
    iso,
    token_expiry,
)
from ._http_api import http_api_routes
from ._identity import identity_routes
from ._indexes import index_routes
from ._openapi import document
from ._realtime import Connection, origin_allowed
from ._secrets import secret_routes
from ._timers import timer_routes
from ._uploads import Uploads

logger = logging.getLogger("backstate.server")
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
READY_TIMEOUT = 3.0  # seconds /readyz waits for the stores
# The IETF httpapi draft's header: a create or an event under a key is applied once.
IDEMPOTENCY_HEADER = "idempotency-key"
LOG_PAGE = 100  # State Backed's "at most 100 entries per call"
# A page holds a millisecond whole; one with more entries than this (user code printing
# in a tight loop does not come near) would be cut, and the rest lost.
LOG_MILLISECOND_LIMIT = 100_000


def parse_time(value: str, parameter: str) -> int:
    """An ISO date-time (as the client sends) or epoch milliseconds."""
    if value.isascii() and value.isdigit():  # isdigit alone admits superscripts, other scripts
        ms = int(value)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ApiError(
                400, "invalid-parameter", f"{parameter} must be an ISO date-time", parameter
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = int(moment.timestamp() * 1000)
    if not 0 <= ms <= MAX_TIME_MS:
        raise ApiError(400, "invalid-parameter", f"{parameter} is out of range", parameter)
    return ms


def _optional(body: dict[str, Any], field: str, kind: type, what: str) -> Any:
    """``body[field]`` if it is a ``kind`` or absent (None); else a 400 naming it."""
    value = body.get(field)
    if value is not None and not isinstance(value, kind):
        raise ApiError(400, "invalid-parameter", f"{field} must be {what}", field)
    return value


def _confirm_deletion(body: dict[str, Any], field: str, key: str, data: str) -> None:
    """State Backed's guard on deletes: an explicit flag and HMAC-SHA256(key, data)."""
    if body.get("dangerDataWillBeDeletedForever") is not True:
        raise ApiError(
            400,
            "invalid-parameter",
            "confirm with dangerDataWillBeDeletedForever",
            "dangerDataWillBeDeletedForever",
        )
    proof = body.get(field)
    expected = hmac_b64(key, data).encode()
    # compare_digest refuses non-ASCII str: compare bytes (a lone surrogate cannot encode).
    given = proof.encode("utf-8", "replace") if isinstance(proof, str) else b""
    if not hmac.compare_digest(given, expected):
        raise ApiError(400, "invalid-parameter", "wrong confirmation HMAC", field)


def _check_source(code: Any, kind: str) -> None:
    """An uploaded file's text (a machine or a migration): a non-empty string."""
    if not isinstance(code, str) or not code.strip():
        raise ApiError(
            400, "invalid-parameter", f"code must be the {kind} file's Python source", "code"
        )


async def _internal_error(request: Request, exc: Exception) -> Response:
    return error_response(500, "internal-error", "internal error")


async def _routing_error(request: Request, exc: Exception) -> Response:
    """The router's own 404 (no such route) and 405 (not that method), as API errors."""
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "invalid-request")
    return error_response(exc.status_code, code, str(exc.detail))


def create_app(
    backend: Backend,
    *,
    tune_gc: bool = False,
    cors_origins: Sequence[str] = (),
    cors_origin_regex: str | None = None,
) -> Starlette:
    """The API over ``backend``. ``tune_gc``: the app owns its process (``backstate serve``
    and ``dev``), whose garbage collector is tuned once it has started (see _gc).
    ``cors_origins`` (``"*"`` for any) and ``cors_origin_regex``: the browser origins
    other than the server's own that may call the API and open /rt (none by default)."""
    cors = {
        "allow_origins": tuple(cors_origins),
        "allow_origin_regex": cors_origin_regex,
        "allow_methods": ["*"],
        "allow_headers": ["*"],  # bearer tokens, no cookies: any header may be sent
    }
    # Starlette's own origin matching, for /rt too (a WebSocket has no preflight).
    origins = CORSMiddleware(_no_app, **cors)  # type: ignore[arg-type]
    api = _Api(backend, origins.is_allowed_origin if cors_origins or cors_origin_regex else _none)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.start()
        if tune_gc:
            _gc.tune_gc()
        yield
        await api.forwarder.close()
        try:
            await asyncio.wait_for(backend.close(), _serving.CLOSE_TIMEOUT)
        except TimeoutError:
            logger.error("the runtime did not close within %g s", _serving.CLOSE_TIMEOUT)

    routes = [
        Route("/machines/{machine}/i/{instance}/events", api.send_event, methods=["POST"]),
        Route("/machines/{machine}/i/{instance}", api.get_instance, methods=["GET"]),
        Route("/machines", api.list_machines, methods=["GET"]),
        Route("/machines", api.create_machine, methods=["POST"]),
        Route("/machines/{machine}", api.get_machine, methods=["GET"]),
        Route("/machines/{machine}", api.create_instance, methods=["POST"]),
        Route("/machines/{machine}", api.delete_machine, methods=["DELETE"]),
        Route("/machines/{machine}/v", api.list_versions, methods=["GET"]),
        Route("/machines/{machine}/v", api.create_version, methods=["POST"]),
        Route("/machines/{machine}/v/{signed}", api.finalize_version, methods=["PUT"]),
        Route("/uploads/{token}", api.uploads.receive, methods=["POST"], name="upload"),
        Route("/machines/{machine}/i", api.list_instances, methods=["GET"]),
        Route("/machines/{machine}/i/{instance}", api.delete_instance, methods=["DELETE"]),
        Route("/machines/{machine}/i/{instance}/events", api.list_transitions, methods=["GET"]),
        Route("/machines/{machine}/i/{instance}/admin", api.admin_instance, methods=["GET"]),
        Route("/machines/{machine}/i/{instance}/status", api.set_status, methods=["PUT"]),
        Route("/machines/{machine}/i/{instance}/v", api.set_desired_version, methods=["PUT"]),
        Route("/machines/{machine}/i/{instance}/v/dry-run", api.dry_run_upgrade, methods=["POST"]),
        Route("/machines/{machine}/migrations", api.create_migration, methods=["POST"]),
        Route("/machines/{machine}/migrations", api.list_migrations, methods=["GET"]),
        Route("/machines/{machine}/migrations/{signed}", api.finalize_migration, methods=["PUT"]),
        Route("/machines/{machine}/migrations/{signed}", api.get_migration, methods=["GET"]),
        Route("/machines/{machine}/migrations/{signed}", api.delete_migration, methods=["DELETE"]),
        Route("/machines/{machine}/indexes/{index}/query", api.query_index, methods=["GET"]),
        Route("/logs", api.logs, methods=["GET"]),
        WebSocketRoute("/rt", api.realtime),
        Route("/openapi.json", lambda request: JSONResponse(document()), methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        *identity_routes(backend),
        *http_api_routes(backend),
        *diagram_routes(backend),
        *dead_letter_routes(backend),
        *secret_routes(backend),
        *timer_routes(backend),
        *index_routes(backend),
        *dashboard_routes(),
    ]
    # The same endpoints again, dispatched ahead of Starlette's router (see _hot).
    hot = [
        ("POST", "/machines/{machine}/i/{instance}/events", api.send_event),
        ("GET", "/machines/{machine}/i/{instance}", api.get_instance),
    ]
    middleware = [Middleware(HotRoutes, routes=hot)]
    if cors_origins or cors_origin_regex:
        # Outside the hot routes, which answer ahead of whatever comes after them; with
        # no origin configured, not there at all (it costs every response some work).
        middleware.insert(0, Middleware(CORSMiddleware, **cors))  # type: ignore[arg-type]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    for error in HANDLED_ERRORS:
        app.add_exception_handler(error, handle_error)
    app.add_exception_handler(HTTPException, _routing_error)
    app.add_exception_handler(500, _internal_error)
    return app


async def _no_app(scope: ASGIScope, receive: Receive, send: Send) -> None:
    raise AssertionError("only consulted for its origin policy")


def _none(origin: str) -> bool:
    return False


class _Api(Requests):
    def __init__(self, backend: Backend, origins: Callable[[str], bool]) -> None:
        super().__init__(backend)
        self.origins = origins
        self.uploads = Uploads()
        self.forwarder = Forwarder(backend.cluster)

    # -- machines -----------------------------------------------------------------------------

    async def list_machines(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINES_READ)
        machines = self.backend.control.machines(principal.org_id)
        return JSONResponse({"machines": [self._machine_info(m) for m in machines]})

    def _machine_info(self, m: Any) -> dict[str, Any]:
        info: dict[str, Any] = {
            "slug": m.slug,
            "createdAt": iso(m.created_at),
            "indexes": list(m.indexes),
        }
        if m.current_version:
            version = next(
                v
                for v in self.backend.control.versions(m.org_id, m.slug)
                if v.id == m.current_version
            )
            info["currentVersion"] = {
                "id": version.id,
                "createdAt": iso(version.created_at),
                "clientInfo": version.client_info,
            }
        return info

    async def create_machine(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINES_WRITE)
        body = await self.body(request)
        slug = check_name(body.get("slug"), "slug")
        indexes = body.get("indexes") or []
        if not isinstance(indexes, list) or not all(isinstance(i, str) for i in indexes):
            raise ApiError(400, "invalid-parameter", "indexes must be a list of names", "indexes")
        self.backend.create_machine(
            principal.org_id, slug, [check_name(i, "indexes") for i in indexes]
        )
        return Response(status_code=201)

    async def get_machine(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINES_READ)
        machine = self.backend.machine(principal.org_id, request.path_params["machine"])
        return JSONResponse({"machine": self._machine_info(machine)})

    async def delete_machine(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINES_ADMIN)
        slug = request.path_params["machine"]
        self.backend.machine(principal.org_id, slug)
        body = await self.body(request)
        _confirm_deletion(body, "hmacSha256OfMachineNameWithMachineNameKey", slug, slug)
        if await self.backend.runtime.list_instances(runtime_name(principal.org_id, slug), limit=1):
            raise ApiError(409, "invalid-state", f"machine {slug!r} still has instances")
        await asyncio.to_thread(self.backend.control.delete_machine, principal.org_id, slug)
        await self.backend.runtime.drop_indexes(runtime_name(principal.org_id, slug))
        self.backend.control_changed()
        return Response(status_code=204)

    async def list_versions(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINE_VERSIONS_READ)
        slug = request.path_params["machine"]
        self.backend.machine(principal.org_id, slug)
        versions = self.backend.control.versions(principal.org_id, slug)
        return JSONResponse(
            {
                "versions": [
                    {"id": v.id, "createdAt": iso(v.created_at), "clientInfo": v.client_info}
                    for v in versions
                ]
            }
        )

    async def create_version(self, request: Request) -> Response:
        """State Backed's provisional create (an empty body: returns a signed id and an
        upload URL), or, as our extension, one step: ``{code, clientInfo?, makeCurrent?}``."""
        principal = self.guard(request, Scope.MACHINE_VERSIONS_WRITE)
        slug = request.path_params["machine"]
        body = await self.body(request)
        if "code" not in body:
            self.backend.machine(principal.org_id, slug)
            token = self.uploads.provision(principal.org_id, slug, "gzip" in request.query_params)
            return JSONResponse(
                {
                    "machineVersionId": token,
                    "codeUploadUrl": str(request.url_for("upload", token=token)),
                    "codeUploadFields": {"key": token},
                }
            )
        return await self._create_version(principal, slug, body.get("code"), body)

    async def finalize_version(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINE_VERSIONS_WRITE)
        slug = request.path_params["machine"]
        body = await self.body(request)
        upload = self.uploads.take(principal.org_id, slug, request.path_params["signed"])
        if upload.extra:
            raise ApiError(404, "upload-not-found", "that id is a migration's, not a version's")
        return await self._create_version(principal, slug, upload.source, body)

    async def _create_version(
        self, principal: Principal, slug: str, code: Any, body: dict[str, Any]
    ) -> Response:
        _check_source(code, "machine")
        client_info = _optional(body, "clientInfo", str, "a string")
        selectors = _optional(body, "indexSelectors", dict, "an object")
        make_current = _optional(body, "makeCurrent", bool, "true or false")
        version = await self.backend.create_version(
            principal.org_id,
            slug,
            code,
            client_info,
            make_current is not False,
            f"{slug}.py",
            selectors,
        )
        return JSONResponse({"machineVersionId": version.id})

    # -- migrations ---------------------------------------------------------------------------

    async def create_migration(self, request: Request) -> Response:
        """State Backed's provisional create (``{fromMachineVersionId,
        toMachineVersionId}``: a signed id and an upload URL). Its client also sends the
        ``code`` here; when a body has it, it counts as uploaded, so a client may skip the
        upload and finalize at once (the upload, if made, replaces it)."""
        principal = self.guard(request, Scope.MACHINE_VERSIONS_WRITE)
        slug = request.path_params["machine"]
        self.backend.machine(principal.org_id, slug)
        body = await self.body(request)
        versions = {
            parameter: check_name(body.get(parameter), parameter)
            for parameter in ("fromMachineVersionId", "toMachineVersionId")
        }
        known = self._versions(principal.org_id, slug)
        for parameter, version_id in versions.items():
            if version_id not in known:
                raise ApiError(
                    404, "machine-version-not-found", f"no version {version_id!r}", parameter
                )
        if versions["fromMachineVersionId"] == versions["toMachineVersionId"]:
            raise ApiError(
                400,
                "invalid-parameter",
                "a migration goes between two different versions",
                "toMachineVersionId",
            )
        token = self.uploads.provision(
            principal.org_id, slug, "gzip" in request.query_params, versions
        )
        if isinstance(body.get("code"), str):
            self.uploads.supply(token, body["code"])
        return JSONResponse(
            {
                "machineVersionMigrationId": token,
                "codeUploadUrl": str(request.url_for("upload", token=token)),
                "codeUploadFields": {"key": token},
            }
        )

    async def finalize_migration(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINE_VERSIONS_WRITE)
        slug = request.path_params["machine"]
        upload = self.uploads.take(principal.org_id, slug, request.path_params["signed"])
        if not upload.extra:
            raise ApiError(404, "upload-not-found", "that id is a version's, not a migration's")
        return await self._create_migration(principal, slug, upload.extra, upload.source)

    async def _create_migration(
        self, principal: Principal, slug: str, versions: dict[str, str], code: Any
    ) -> Response:
        _check_source(code, "migration")
        row = await self.backend.create_migration(
            principal.org_id,
            slug,
            versions["fromMachineVersionId"],
            versions["toMachineVersionId"],
            code,
        )
        # State Backed's spec names the property machineVersionId; its client reads neither.
        return JSONResponse({"machineVersionMigrationId": row.id, "machineVersionId": row.id})

    async def list_migrations(self, request: Request) -> Response:
        """Our extension: a machine's migrations, oldest first (without their code)."""
        principal = self.guard(request, Scope.MACHINE_VERSIONS_READ)
        slug = request.path_params["machine"]
        self.backend.machine(principal.org_id, slug)
        rows = await asyncio.to_thread(self.backend.control.migrations, principal.org_id, slug)
        return JSONResponse({"migrations": [_migration_body(row) for row in rows]})

    async def get_migration(self, request: Request) -> Response:
        """Our extension: one migration, with its code."""
        principal = self.guard(request, Scope.MACHINE_VERSIONS_READ)
        row = self.backend.migration(
            principal.org_id, request.path_params["machine"], request.path_params["signed"]
        )
        return JSONResponse({**_migration_body(row), "code": row.source})

    async def delete_migration(self, request: Request) -> Response:
        """Our extension: delete a migration (to replace one uploaded with a mistake)."""
        principal = self.guard(request, Scope.MACHINE_VERSIONS_WRITE)
        await self.backend.delete_migration(
            principal.org_id, request.path_params["machine"], request.path_params["signed"]
        )
        return Response(status_code=204)

    def _versions(self, org_id: str, slug: str) -> dict[str, dict[str, Any]]:
        """MachineVersionInfo by version id."""
        return {
            v.id: {"id": v.id, "createdAt": iso(v.created_at), "clientInfo": v.client_info}
            for v in self.backend.control.versions(org_id, slug)
        }

    # -- instances ----------------------------------------------------------------------------

    def _instance(self, request: Request, principal: Principal) -> tuple[str, str, str]:
        slug = request.path_params["machine"]
        self.backend.machine(principal.org_id, slug)
        return (
            slug,
            runtime_name(principal.org_id, slug),
            request.path_params.get("instance", ""),
        )

    async def create_instance(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_WRITE)
        slug, machine, _ = self._instance(request, principal)
        body = await self.body(request)
        name = check_name(body.get("slug"), "slug")
        context = body.get("context", {})
        if not isinstance(context, dict):
            raise ApiError(400, "invalid-parameter", "context must be an object", "context")
        version = _optional(body, "machineVersionId", str, "a string")
        forwarded = await self.forwarder.route(request, (machine, name))
        if forwarded is not None:
            return forwarded
        self.backend.require_version(principal.org_id, slug, version)
        # An empty context (the API's default) means the machine's own initial context.
        try:
            state = await self.backend.runtime.create(
                machine,
                name,
                context=context or None,
                input=body.get("input"),
                version=version,
                auth=self.auth_context(request, principal),
                idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            )
        except Conflict as exc:
            if exc.code != "instance-exists":
                raise
            # State Backed's code for "that instance already exists" is invalid-state.
            raise ApiError(409, "invalid-state", caller_message(exc), "slug") from exc
        return JSONResponse(state_body(state))

    async def list_instances(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_READ)
        slug, machine, _ = self._instance(request, principal)
        versions = self._versions(principal.org_id, slug)
        rows = await self.backend.runtime.list_instances(
            machine, after=request.query_params.get("cursor"), limit=100
        )
        body: dict[str, Any] = {
            "instances": [
                {
                    "slug": r.name,
                    "createdAt": iso(r.created_at),
                    "status": r.status,
                    "machineVersion": versions.get(r.version, {"id": r.version}),
                }
                for r in rows
            ]
        }
        if len(rows) == 100:
            body["cursor"] = rows[-1].name
        return JSONResponse(body)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready when the stores answer: a load balancer stops sending requests that would
        only get 503 ``store-unavailable`` while they do not."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self.backend.check_stores), READY_TIMEOUT)
        except (StoreError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {READY_TIMEOUT:g} s"
            return error_response(503, "store-unavailable", f"the store is unavailable: {reason}")
        return JSONResponse({"status": "ready"})

    async def get_instance(self, request: Request) -> Response:
        principal = self.guard(request, Scope.STATE_READ)
        _, machine, name = self._instance(request, principal)
        state = await self.backend.runtime.get(
            machine, name, auth=self.auth_context(request, principal)
        )
        return JSONResponse(state_body(state))

    async def send_event(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_WRITE)
        _, machine, name = self._instance(request, principal)
        body = await self.body(request)
        if "event" not in body:
            raise ApiError(400, "invalid-parameter", "the body needs an event", "event")
        forwarded = await self.forwarder.route(request, (machine, name))
        if forwarded is not None:
            return forwarded
        state = await self.backend.runtime.send(
            machine,
            name,
            body["event"],
            auth=self.auth_context(request, principal),
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        )
        answer = state_body(state)
        if state.no_transition is not None:
            # An extension of the State schema, which State Backed's clients ignore.
            answer["noTransition"] = {
                **state.no_transition,
                "message": sentence(state.no_transition),
            }
        return JSONResponse(answer)

    async def admin_instance(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_ADMIN)
        slug, machine, name = self._instance(request, principal)
        state = await self.backend.runtime.get(machine, name)
        versions = self._versions(principal.org_id, slug)
        body = state_body(state)
        body.update(
            context=state.context,
            status="paused" if state.paused else "running",
            machineVersion=versions.get(state.version, {"id": state.version}),
            createdAt=iso(state.created_at),
        )
        if state.desired_version is not None:
            body["desiredMachineVersion"] = versions.get(
                state.desired_version, {"id": state.desired_version}
            )
        return JSONResponse(body)

    async def list_transitions(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_ADMIN)
        _, machine, name = self._instance(request, principal)
        await self.backend.runtime.get(machine, name)
        after = check_int(request.query_params.get("cursor", "-1"), "cursor")
        rows = await self.backend.runtime.history(machine, name, after=after, limit=100)
        body: dict[str, Any] = {
            "transitions": [
                {
                    "createdAt": iso(r.ts),
                    "state": r.snapshot["value"],
                    "event": r.event,
                    "context": r.snapshot.get("context"),  # extension: admin-only route
                }
                for r in rows
            ]
        }
        if len(rows) == 100:
            body["cursor"] = str(rows[-1].seq)
        return JSONResponse(body)

    async def set_status(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_ADMIN)
        _, machine, name = self._instance(request, principal)
        status = (await self.body(request)).get("status")
        if status not in ("running", "paused"):
            raise ApiError(400, "invalid-parameter", "status must be running or paused", "status")
        forwarded = await self.forwarder.route(request, (machine, name))
        if forwarded is not None:
            return forwarded
        if status == "paused":
            await self.backend.runtime.pause(machine, name)
        else:
            await self.backend.runtime.resume(machine, name)
        return Response(status_code=204)

    async def set_desired_version(self, request: Request) -> Response:
        """State Backed's ``PUT .../v``; our extension ``upgradeNow: true`` upgrades at
        once if the instance is settled, instead of at its next event."""
        principal = self.guard(request, Scope.INSTANCES_ADMIN)
        _, machine, name = self._instance(request, principal)
        body = await self.body(request)
        target = check_name(body.get("targetMachineVersionId"), "targetMachineVersionId")
        now = _optional(body, "upgradeNow", bool, "true or false") is True
        forwarded = await self.forwarder.route(request, (machine, name))
        if forwarded is not None:
            return forwarded
        await self.backend.runtime.set_desired_version(machine, name, target, now=now)
        return Response(status_code=201)

    async def dry_run_upgrade(self, request: Request) -> Response:
        """Our extension: replay the instance's history against a version."""
        principal = self.guard(request, Scope.INSTANCES_ADMIN)
        _, machine, name = self._instance(request, principal)
        body = await self.body(request)
        target = check_name(body.get("targetMachineVersionId"), "targetMachineVersionId")
        report = await self.backend.runtime.dry_run_upgrade(machine, name, target)
        return JSONResponse(report.to_json())

    async def query_index(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INDEXES_READ)
        slug = request.path_params["machine"]
        index = request.path_params["index"]
        if index not in self.backend.machine(principal.org_id, slug).indexes:
            raise ApiError(404, "index-not-found", f"machine {slug!r} has no index {index!r}")
        q = request.query_params
        value: str | float | None = q.get("value")
        kind = q.get("type", "string")
        if kind not in ("string", "number"):
            raise ApiError(400, "invalid-parameter", "type must be string or number", "type")
        if value is not None and kind == "number":
            try:
                value = float(value)
            except ValueError as exc:
                raise ApiError(400, "invalid-parameter", "value must be a number", "value") from exc
        direction = q.get("dir", "asc")
        if direction not in ("asc", "desc"):
            raise ApiError(400, "invalid-parameter", "dir must be asc or desc", "dir")
        page = await self.backend.runtime.query(
            runtime_name(principal.org_id, slug),
            index,
            op=q.get("op"),
            value=value,
            descending=direction == "desc",
            limit=check_int(q.get("limit", "100"), "limit"),
            cursor=q.get("cursor"),
        )
        result: dict[str, Any] = {
            "instances": [{"indexValue": v, "slug": name} for v, name in page.hits]
        }
        if page.cursor is not None:
            result["cursor"] = page.cursor
        return JSONResponse(result)

    async def delete_instance(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_ADMIN)
        slug, machine, name = self._instance(request, principal)
        body = await self.body(request)
        _confirm_deletion(body, "hmacSha256OfMachineInstanceNameWithMachineNameKey", slug, name)
        forwarded = await self.forwarder.route(request, (machine, name))
        if forwarded is not None:
            return forwarded
        await self.backend.runtime.delete(machine, name)
        return Response(status_code=204)

    async def logs(self, request: Request) -> Response:
        """State Backed's paging: ``from`` is inclusive and the next call's ``from`` is
        ``maxTimestamp``, which carries only a millisecond (clients parse it into a
        date). So a page never ends inside a millisecond, and ``maxTimestamp`` is the
        millisecond after its last entry: nothing comes twice, nothing is skipped, and
        ``maxTimestamp == from`` (an empty page) still means caught up."""
        principal = self.guard(request, Scope.LOGS_READ)
        q = request.query_params
        since = parse_time(q.get("from", "0"), "from")
        machine = q.get("machine")
        filters: dict[str, Any] = {
            "until": parse_time(q["to"], "to") if "to" in q else None,
            "machine": runtime_name(principal.org_id, machine) if machine else None,
            "instance": q.get("instance"),
            "version": q.get("version"),
            "namespace": principal.org_id,
        }
        runtime = self.backend.runtime
        rows = await runtime.logs(since=since, limit=LOG_PAGE + 1, **filters)
        if len(rows) > LOG_PAGE:
            cut = rows[LOG_PAGE].ts  # the next entry's millisecond: not split across pages
            rows = [r for r in rows[:LOG_PAGE] if r.ts < cut]
            if not rows:  # more than a page in one millisecond: that millisecond, whole
                rows = await runtime.logs(
                    since=cut, limit=LOG_MILLISECOND_LIMIT, **{**filters, "until": cut + 1}
                )
        return JSONResponse(
            {
                "maxTimestamp": iso(rows[-1].ts + 1 if rows else since),
                "logs": [
                    {
                        "timestamp": iso(r.ts),
                        "orgId": principal.org_id,
                        "machineName": r.machine.partition(".")[2],
                        "instanceName": r.instance,
                        "machineVersionId": r.version,
                        "outputType": "stderr" if r.level == "error" else "stdout",
                        "log": r.message,
                    }
                    for r in rows
                ],
            }
        )

    # -- realtime ----------------------------------------------------------------------------

    async def realtime(self, ws: WebSocket) -> None:
        try:
            token = ws.query_params.get("token")
            principal = self.principal(ws, token)
            require_scope(principal, Scope.STATE_READ)
            if not origin_allowed(ws, self.origins):
                raise ApiError(403, "origin-not-allowed", "this server does not serve that origin")
        except (AuthError, ApiError) as exc:
            # Refuse the handshake with the API's error response (401 for a bad token,
            # 403 for a missing scope, org or origin), so clients can tell them apart;
            # servers without the denial-response extension close with 4401 / 4403.
            status = getattr(exc, "status", 401)
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(await handle_error(ws, exc))  # type: ignore[arg-type]
            else:
                await ws.close(code=4401 if status == 401 else 4403, reason=str(exc)[:120])
            return
        await ws.accept()
        await Connection(self.backend, ws, principal, token_expiry(token)).serve()


def _migration_body(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "fromMachineVersionId": row.from_version,
        "toMachineVersionId": row.to_version,
        "createdAt": iso(row.created_at),
    }
