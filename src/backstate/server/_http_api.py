"""The HTTP API mapper: ``ANY /http-api/{org}/machines/{machine}/{slug}``.

A machine file may export ``http_api``, a dict of slug -> mapper, where a mapper is a
dict with two functions (State Backed's ``httpApiMapper`` with Python names)::

    http_api = {
        "increment": {
            "handler": handle,                  # State Backed's `handler`
            "response_mapper": respond,         # State Backed's `responseMapper`
        }
    }

``handler(request)`` gets ``{"body", "headers", "method", "query"}`` (``body``: the parsed
JSON, else the UTF-8 text, ``None`` when empty; ``headers``: lower-case names, repeated
headers joined with ", "; ``query``: the last value of each parameter) and returns
``{"machineInstanceName", "event", "authContext", "initialContext"?}``. It authenticates
the request itself: no JWT is needed on this route.

``response_mapper({"state", "context", "result"})`` (``context`` is the full context,
``result`` the machine's output once it is done, else ``None``) returns
``{"statusCode", "headers"?, "body"}``. Both functions are required (a version without
them is refused at upload); either may be sync (run in a thread) or async. The flow follows State Backed (docs/http_api.md): a handler that
raises fails the request (400 ``http-api-handler-failed``, or the exception's
``status_code`` if it has one in 400..599) before anything is created or sent; a
missing instance is created when the handler returns ``initialContext`` (``allow_write``
with ``write_type="initialization"``), else 404; then ``allow_write`` runs with the
returned ``authContext``, the event is sent and the instance settles; a response mapper
that raises (or returns nothing usable) gives 200 ``{"ok": true}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backstate.runtime import BackstateError, Conflict, NotFound, UserRaised
from backstate.runtime._deployments import Version

from ._backend import Backend, runtime_name
from ._http import ApiError, JSONResponse, loads, read_body

logger = logging.getLogger("backstate.server.http_api")

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
HANDLER = "handler"
RESPONSE_MAPPER = "response_mapper"


def http_api_routes(backend: Backend) -> list[BaseRoute]:
    mapper = _HttpApi(backend)
    return [
        Route(
            "/http-api/{org}/machines/{machine}/{slug}",
            mapper.serve,
            methods=METHODS,
        )
    ]


class _HttpApi:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def serve(self, request: Request) -> Response:
        org = request.path_params["org"]
        slug = request.path_params["machine"]
        api_slug = request.path_params["slug"]
        version = self._version(org, slug, api_slug)
        code = self.backend.runtime.processor.code
        http_request = {
            "body": await _body(request, self.backend.max_body_bytes),
            "headers": {k: ", ".join(request.headers.getlist(k)) for k in request.headers},
            "method": request.method,
            "query": dict(request.query_params),
        }
        try:
            returned = await code.http_api(version, api_slug, HANDLER, http_request)
        except UserRaised as exc:
            status = exc.status_code
            if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status < 600:
                status = 400
            raise ApiError(status, "http-api-handler-failed", str(exc)) from None
        name, event, auth, initial = _handler_result(returned)

        machine = runtime_name(org, slug)
        runtime = self.backend.runtime
        try:
            await runtime.get(machine, name)
        except NotFound as exc:
            if initial is None or exc.code != "instance-not-found":
                raise
            try:
                # An empty initialContext means the machine's own initial context.
                await runtime.create(machine, name, context=initial or None, auth=auth)
            except Conflict as clash:
                if clash.code != "instance-exists":  # created concurrently: just send
                    raise
        state = await runtime.send(machine, name, event, auth=auth)

        mapper_input = {
            "state": state.value,
            "context": state.context,
            "result": state.snapshot.output if state.done else None,
        }
        try:
            return _response(await code.http_api(version, api_slug, RESPONSE_MAPPER, mapper_input))
        except (UserRaised, BackstateError, TypeError, ValueError):
            logger.warning(
                "http api %s/%s/%s: the response mapper failed",
                org,
                slug,
                request.path_params["slug"],
                exc_info=True,
            )
            return JSONResponse({"ok": True})

    def _version(self, org: str, slug: str, api_slug: str) -> Version:
        """The machine's current version, which must map ``api_slug``."""
        machine = self.backend.control.machine(org, slug)
        if machine is None or machine.current_version not in self.backend.deployed:
            raise ApiError(404, "machine-not-found", f"no machine {slug!r}")
        version = self.backend.runtime.registry.get(
            runtime_name(org, slug), machine.current_version
        )
        if api_slug not in version.http_api:
            raise ApiError(
                404, "http-api-not-found", f"machine {slug!r} has no http api {api_slug!r}"
            )
        return version


async def _body(request: Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    if not raw:
        return None
    try:
        return loads(raw)
    except ApiError as exc:
        text = raw.decode("utf-8", errors="replace")
        if exc.code == "too-deep" or (exc.code == "invalid-unicode" and "\ufffd" not in text):
            raise  # JSON the handler cannot be given: too deep, or escapes lone surrogates
        return text  # not JSON (nor UTF-8, maybe): the handler gets it as text


def _handler_result(value: Any) -> tuple[str, Any, dict[str, Any], dict[str, Any] | None]:
    def invalid(message: str) -> ApiError:
        return ApiError(422, "http-api-handler-invalid", f"the handler's result {message}")

    if not isinstance(value, Mapping):
        raise invalid(f"must be a dict, not {type(value).__name__}")
    name = value.get("machineInstanceName")
    if not isinstance(name, str):
        raise invalid("needs machineInstanceName (a string)")
    if "event" not in value:
        raise invalid("needs an event")
    auth = value.get("authContext")
    if not isinstance(auth, dict):
        raise invalid("needs authContext (a dict)")
    initial = value.get("initialContext")
    if initial is not None and not isinstance(initial, dict):
        raise invalid("has an initialContext that is not a dict")
    return name, value["event"], auth, initial


def _response(value: Any) -> Response:
    """The response mapper's ``{statusCode, headers?, body}``; raises when unusable."""
    if not isinstance(value, Mapping):
        raise TypeError(f"the response mapper returned {type(value).__name__}, not a dict")
    status = value.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status < 600:
        raise ValueError(f"statusCode must be an HTTP status, not {status!r}")
    headers = value.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise TypeError("headers must be a dict")
    body = value.get("body")
    media_type: str | None
    if body is None:
        content, media_type = b"", None
    elif isinstance(body, bytes):
        content, media_type = body, "application/octet-stream"
    elif isinstance(body, str):
        content, media_type = body.encode(), "text/plain; charset=utf-8"
    else:
        content = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        media_type = "application/json"
    return Response(
        content,
        status_code=status,
        headers={str(k): str(v) for k, v in headers.items()},
        media_type=media_type,
    )
