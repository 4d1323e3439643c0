"""Request plumbing shared by the route modules: errors, authentication, bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import traceback
import weakref
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse as _StarletteJSONResponse
from starlette.responses import Response

from backstate.auth import (
    ACT_HEADER,
    AuthError,
    Principal,
    Scope,
    act_as,
    require_scope,
    verify_request_token,
)
from backstate.machine import MachineModuleError
from backstate.runtime import BackstateError
from backstate.runtime._deployments import NAME
from backstate.store import StoreError

from ._backend import Backend
from ._cache import MISS, Expiring

_ORG_PREFIX = re.compile(r"\borg_[A-Za-z0-9_-]+\.(?=[A-Za-z0-9_-])")
ORG_HEADER = "x-statebacked-org-id"
_INTEGER = re.compile(r"-?[0-9]+")


class JSONResponse(_StarletteJSONResponse):
    """Starlette's JSON response rendered by orjson (several times faster than the
    standard library on a hot path), with the standard library as the fallback for what
    orjson refuses (integers beyond 64 bits)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return super().render(content)


# Request JSON nests at most this deep (a top-level object is 1). Deeper input used to
# reach recursive code (the standard library's parser, copies, the encoder) and answer
# 500; real contexts and events nest a handful of levels.
MAX_JSON_DEPTH = 64


def loads(raw: bytes | str, what: str = "the body") -> Any:
    """Parse JSON from a client: orjson first; the standard library for what orjson
    refuses (integers beyond 64 bits, NaN, which later checks reject with their own
    clear errors). Refused with 400 ``invalid-json``, ``too-deep`` (nested deeper than
    ``MAX_JSON_DEPTH``) or ``invalid-unicode`` (a lone surrogate, which no UTF-8 text
    can hold: stored, it made every later read of the instance fail)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as first:
        try:
            data = json.loads(raw)
        except RecursionError:
            raise _too_deep(what) from None
        except (ValueError, UnicodeDecodeError) as exc:
            message = str(first) if "surrogate" in str(first) else str(exc)
            code = "invalid-unicode" if "surrogate" in message else "invalid-json"
            raise ApiError(400, code, f"{what} is not JSON: {message}") from None
        check_json(data, what)
        return data
    # orjson yields only valid Unicode, and nesting needs a look only with enough
    # brackets for it: most bodies skip the walk.
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH:
        check_json(data, what)
    return data


def check_json(data: Any, what: str) -> None:
    """400 ``too-deep`` or ``invalid-unicode`` unless ``data`` (parsed JSON) nests at
    most ``MAX_JSON_DEPTH`` deep and every key and string is valid Unicode. A loop, not
    recursion: the input decides the depth."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, what)
            continue
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(what)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_text(key, what)
            if isinstance(item, dict | list):
                stack.append((item, depth + 1))
            elif isinstance(item, str):
                _check_text(item, what)


def _check_text(text: str, what: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                400, "invalid-unicode", f"{what} holds a string that is not valid Unicode"
            ) from None


def _too_deep(what: str) -> ApiError:
    return ApiError(400, "too-deep", f"{what} nests deeper than {MAX_JSON_DEPTH} levels")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.parameter = parameter


def error_response(
    status: int, code: str, message: str, parameter: str | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "code": code}
    if parameter is not None:
        body["parameter"] = parameter
    return JSONResponse(body, status_code=status)


# Client errors are answered here; anything else is a bug and reaches Starlette's
# server-error handling (a 500 and a logged traceback).
HANDLED_ERRORS = (
    ApiError,
    AuthError,
    BackstateError,
    ClientDisconnect,
    MachineModuleError,
    StoreError,
)


async def handle_error(request: Request, exc: Exception) -> Response:
    # The frames the error went through hold what refers back to it (the caller's work
    # item holds the future that held the error): a reference cycle per refused request,
    # which only a full collection frees, and those are rare in the server (see _gc).
    # The error is answered here, so its frames' locals are done with.
    traceback.clear_frames(exc.__traceback__)
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.parameter)
    if isinstance(exc, AuthError):
        return error_response(exc.status, exc.code, exc.message, getattr(exc, "parameter", None))
    if isinstance(exc, BackstateError):
        return error_response(exc.status, exc.code, caller_message(exc))
    if isinstance(exc, MachineModuleError):
        return error_response(400, exc.code, str(exc), "code")
    if isinstance(exc, ClientDisconnect):
        # The client left (or was cut off for sending too slowly) before its body was
        # complete: nobody will read this answer, but the request is answered.
        return error_response(400, "incomplete-body", "the body ended before it was complete")
    if isinstance(exc, StoreError):
        return error_response(503, "store-unavailable", str(exc))
    return error_response(500, "internal-error", "internal error")


def caller_message(exc: BackstateError) -> str:
    """A runtime error's message as its caller names things: the runtime names machines
    ``<org>.<machine>``, callers know them without the org."""
    return _ORG_PREFIX.sub("", exc.message)


def hmac_b64(key: str, data: str) -> str:
    digest = hmac.new(key.encode(), data.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# Tokens already verified, until their own expiry: PyJWT's parsing costs about as much as
# the rest of a request. A hit still asks for the signing key, so a deleted key refuses
# its tokens at once.
_CACHES: weakref.WeakKeyDictionary[Backend, Expiring[str, Principal]] = weakref.WeakKeyDictionary()


def _verified(backend: Backend, token: str | None) -> Principal:
    cache = _CACHES.get(backend)
    if cache is None:
        cache = _CACHES[backend] = Expiring()
    hit = cache.get(token, time.time()) if token else MISS
    if hit is not MISS and hit.key_id and backend.lookup_key(hit.key_id) is not None:
        return hit
    principal = verify_request_token(token, backend.lookup_key)
    expires = token_expiry(token)
    if token and expires is not None and principal.key_id:
        cache.put(token, principal, expires)
    return principal


def token_expiry(token: str | None) -> float | None:
    """The ``exp`` of a token that has just been verified (so it is well formed)."""
    try:
        payload = token.split(".")[1] if token else ""
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None
    except (ValueError, IndexError):
        return None


class Requests:
    """Authentication and body parsing for one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def principal(self, conn: HTTPConnection, token: str | None = None) -> Principal:
        if token is None:
            header = conn.headers.get("authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else None
        principal = _verified(self.backend, token)
        org = conn.headers.get(ORG_HEADER)
        if org is None and conn.scope.get("query_string"):
            org = conn.query_params.get(ORG_HEADER)
        if org is not None and org != principal.org_id:
            raise ApiError(403, "missing-org", "this token does not belong to that org")
        return principal

    def auth_context(self, request: Request, principal: Principal) -> dict[str, Any]:
        header = request.headers.get(ACT_HEADER)
        if header is None:
            return principal.auth_context
        claims = act_as(principal, header)
        check_json(claims, ACT_HEADER)
        return claims

    async def body(self, request: Request) -> dict[str, Any]:
        raw = await read_body(request, self.backend.max_body_bytes)
        if not raw:
            return {}
        data = loads(raw)
        if not isinstance(data, dict):
            raise ApiError(400, "invalid-parameter", "the body must be a JSON object", "body")
        return data

    def guard(self, request: Request, scope: Scope) -> Principal:
        principal = self.principal(request)
        require_scope(principal, scope)
        return principal


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 ``payload-too-large`` as soon as it is known
    to exceed ``limit`` bytes (by its Content-Length, or while it streams in), so an
    oversize body is never held in memory. Kept as Starlette keeps a body it read, for
    whatever reads it again (forwarding to another node)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    request._body = raw = b"".join(chunks)
    return raw


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload-too-large", f"request bodies are limited to {limit} bytes")


def iso(ms: int) -> str:
    """Epoch milliseconds as JavaScript's toISOString() writes them (the API's dates)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def check_name(value: Any, parameter: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ApiError(
            400, "invalid-parameter", f"{parameter} must match {NAME.pattern}", parameter
        )
    return value


def check_int(value: str, parameter: str) -> int:
    """A query parameter's integer, within what the stores hold (64 bits)."""
    number = int(value) if _INTEGER.fullmatch(value) else None
    if number is None or not -(2**63) <= number < 2**63:
        raise ApiError(400, "invalid-parameter", f"{parameter} must be an integer", parameter)
    return number
