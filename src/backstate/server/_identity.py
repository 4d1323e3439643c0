"""Identity routes: orgs, keys, identity providers, token providers, token exchange.

Every route sees only the caller's org: another org's key, IdP or token provider is
404 here, exactly like one that does not exist. Decisions State Backed leaves to us
(see docs/auth.md, "Identity routes"):

- ``POST /orgs`` is open to any key holding ``org.write`` (the first-start admin key,
  or an admin key of an org created that way). A key reaches a single org, so the new
  org's own admin key comes back once in the response, as ``adminKey: {id, key}``.
- A caller never hands out more than it holds: ``POST /keys`` refuses scopes its key
  lacks, and ``POST /token-providers`` refuses a key with scopes the caller lacks
  (403 ``missing-scope``); otherwise ``tokens.admin`` would mint admin tokens.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backstate.auth import (
    AuthError,
    IdentityProvider,
    JwksCache,
    Key,
    Principal,
    Scope,
    TokenExchangeError,
    TokenProvider,
    anonymous_idp,
    anonymous_provider,
    exchange,
    new_key,
    new_org_id,
    parse_key_scopes,
)
from backstate.store import ControlStore, IdpRow, KeyRow, OrgRow, TokenProviderRow

from ._backend import ADMIN_SCOPES, Backend, now_ms
from ._http import ApiError, JSONResponse, Requests, error_response, iso, read_body
from ._jwks_fetch import JwksFetch

MAX_LABEL_CHARS = 256
ANONYMOUS_KEY_NAME = "anonymous-access"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

Handler = Callable[[Request], Awaitable[Response]]


# -- orgs, shared with Backend.ensure_admin -------------------------------------------------


def key_row(key: Key) -> KeyRow:
    return KeyRow(
        key.id, key.org_id, key.name, tuple(s.value for s in key.scopes), key.secret, key.created_at
    )


def idp_row(org_id: str, idp: IdentityProvider, created_at: int) -> IdpRow:
    return IdpRow(
        org_id, idp.aud, idp.iss, idp.algs, idp.mapping, idp.key, idp.jwks_url, created_at
    )


def token_provider_row(org_id: str, provider: TokenProvider, created_at: int) -> TokenProviderRow:
    return TokenProviderRow(org_id, provider.service, provider.key_id, provider.mapping, created_at)


def create_org(
    control: ControlStore, name: str, *, allow_anonymous: bool, first: bool = False
) -> tuple[str, Key]:
    """A new org with an admin key (returned, secret included) and, with
    ``allow_anonymous``, what anonymous sessions need: a ``production`` key, the anonymous
    IdP and the ``anonymous-statebacked-dev`` token provider. All or nothing."""
    now = now_ms()
    org = OrgRow(new_org_id(), name, now)
    admin = new_key(org.id, "admin", ADMIN_SCOPES, now)
    keys = [key_row(admin)]
    idps: list[IdpRow] = []
    providers: list[TokenProviderRow] = []
    if allow_anonymous:
        anonymous = new_key(org.id, ANONYMOUS_KEY_NAME, parse_key_scopes(use="production"), now)
        keys.append(key_row(anonymous))
        idps.append(idp_row(org.id, anonymous_idp(org.id), now))
        providers.append(token_provider_row(org.id, anonymous_provider(anonymous.id), now))
    control.add_org(org, keys=keys, idps=idps, token_providers=providers, first=first)
    return org.id, admin


# -- routes ---------------------------------------------------------------------------------


def identity_routes(backend: Backend) -> list[BaseRoute]:
    api = _Identity(backend)
    return [
        Route("/orgs", _api_errors(api.list_orgs), methods=["GET"]),
        Route("/orgs", _api_errors(api.create_org), methods=["POST"]),
        Route("/keys", _api_errors(api.list_keys), methods=["GET"]),
        Route("/keys", _api_errors(api.create_key), methods=["POST"]),
        Route("/keys/{key_id}", _api_errors(api.delete_key), methods=["DELETE"]),
        Route("/idps", _api_errors(api.list_idps), methods=["GET"]),
        Route("/idps", _api_errors(api.upsert_idp), methods=["POST"]),
        Route("/idps", _api_errors(api.delete_idp), methods=["DELETE"]),
        Route("/token-providers", _api_errors(api.list_token_providers), methods=["GET"]),
        Route("/token-providers", _api_errors(api.upsert_token_provider), methods=["POST"]),
        Route(
            "/token-providers/{service}",
            _api_errors(api.delete_token_provider),
            methods=["DELETE"],
        ),
        Route("/tokens", api.tokens, methods=["POST"]),
    ]


def _api_errors(handler: Handler) -> Handler:
    """Answer our own 4xx here, as ``{error, code, parameter?}`` (an AuthError keeps its
    ``parameter``); anything else goes on to the app's handler."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except (ApiError, AuthError) as error:
            return error_response(error.status, error.code, error.message, error.parameter)

    return wrapped


def _label(value: Any, parameter: str) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_LABEL_CHARS
        or not value.isprintable()
    ):
        raise ApiError(
            400,
            "invalid-parameter",
            f"{parameter} must be a printable string of 1 to {MAX_LABEL_CHARS} characters",
            parameter,
        )
    return value


def _optional_string(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid-parameter", f"{name} must be a non-empty string", name)
    return value


def _require_scopes(principal: Principal, scopes: Iterable[Scope], why: str) -> None:
    missing = [scope.value for scope in scopes if not principal.has_scope(scope)]
    if missing:
        raise ApiError(403, "missing-scope", f"{why} needs scopes you lack: {', '.join(missing)}")


class _Identity(Requests):
    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.jwks = JwksCache(JwksFetch(allow_private=backend.allow_private_jwks))

    # -- orgs ----------------------------------------------------------------------------------

    async def list_orgs(self, request: Request) -> Response:
        principal = self.guard(request, Scope.ORG_READ)
        org = self.backend.control.org(principal.org_id)
        orgs = [] if org is None else [org]
        return JSONResponse(
            {
                "orgs": [
                    {
                        "id": o.id,
                        "name": o.name,
                        "role": "admin",
                        "createdAt": iso(o.created_at),
                        "limits": {"monthlyEventsLimit": None, "monthlyReadsLimit": None},
                    }
                    for o in orgs
                ]
            }
        )

    async def create_org(self, request: Request) -> Response:
        self.guard(request, Scope.ORG_WRITE)
        body = await self.body(request)
        name = _label(body.get("name"), "name")
        allow_anonymous = body.get("allowAnonymousAccess", True)
        if not isinstance(allow_anonymous, bool):
            raise ApiError(
                400,
                "invalid-parameter",
                "allowAnonymousAccess must be a boolean",
                "allowAnonymousAccess",
            )
        org_id, admin = await asyncio.to_thread(
            create_org, self.backend.control, name, allow_anonymous=allow_anonymous
        )
        return JSONResponse({"id": org_id, "adminKey": {"id": admin.id, "key": admin.secret}})

    # -- keys ----------------------------------------------------------------------------------

    async def list_keys(self, request: Request) -> Response:
        principal = self.guard(request, Scope.TOKENS_ADMIN)
        keys = self.backend.control.keys(principal.org_id)
        return JSONResponse(
            {
                "keys": [
                    {
                        "id": k.id,
                        "name": k.name,
                        "scopes": list(k.scopes),
                        "createdAt": iso(k.created_at),
                    }
                    for k in keys
                ]
            }
        )

    async def create_key(self, request: Request) -> Response:
        principal = self.guard(request, Scope.ORG_KEYS_WRITE)
        body = await self.body(request)
        name = _label(body.get("name"), "name")
        use, scopes = body.get("use"), body.get("scopes")
        if use is not None and not isinstance(use, str):
            raise ApiError(400, "invalid-parameter", "use must be a string", "use")
        if scopes is not None and (
            not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)
        ):
            raise ApiError(400, "invalid-parameter", "scopes must be a list of strings", "scopes")
        granted = parse_key_scopes(use=use, scopes=scopes)
        _require_scopes(principal, granted, "a key with these scopes")
        key = new_key(principal.org_id, name, granted, now_ms())
        self.backend.control.add_key(key_row(key))
        self.backend.control_changed()
        return JSONResponse({"id": key.id, "key": key.secret})

    async def delete_key(self, request: Request) -> Response:
        principal = self.guard(request, Scope.ORG_KEYS_WRITE)
        key_id = request.path_params["key_id"]
        if not self.backend.control.delete_key(principal.org_id, key_id):
            raise ApiError(404, "key-not-found", f"no key {key_id!r} in this org")
        self.backend.control_changed()
        return Response(status_code=204)

    # -- identity providers --------------------------------------------------------------------

    async def list_idps(self, request: Request) -> Response:
        principal = self.guard(request, Scope.TOKENS_ADMIN)
        return JSONResponse(
            {"idps": [_idp(row).to_json() for row in self.backend.control.idps(principal.org_id)]}
        )

    async def upsert_idp(self, request: Request) -> Response:
        principal = self.guard(request, Scope.TOKENS_ADMIN)
        body = await self.body(request)
        for name in ("aud", "iss", "key", "jwksUrl"):
            _optional_string(body, name)
        idp = IdentityProvider.from_json(body)
        self.backend.control.upsert_idp(idp_row(principal.org_id, idp, now_ms()))
        return Response(status_code=204)

    async def delete_idp(self, request: Request) -> Response:
        principal = self.guard(request, Scope.TOKENS_ADMIN)
        body = await self.body(request)
        aud, iss = _optional_string(body, "aud"), _optional_string(body, "iss")
        if aud is None and iss is None:
            raise ApiError(400, "invalid-parameter", "give aud, iss or both", "aud")
        if not self.backend.control.delete_idp(principal.org_id, aud, iss):
            raise ApiError(404, "idp-not-found", "no identity provider with this aud and iss")
        return Response(status_code=204)

    # -- token providers -----------------------------------------------------------------------

    async def list_token_providers(self, request: Request) -> Response:
        principal = self.guard(request, Scope.TOKENS_ADMIN)
        rows = self.backend.control.token_providers(principal.org_id)
        return JSONResponse(
            {
                "tokenProviders": [
                    {"service": r.service, "keyId": r.key_id, "mapping": r.mapping} for r in rows
                ]
            }
        )

    async def upsert_token_provider(self, request: Request) -> Response:
        principal = self.guard(request, Scope.TOKENS_ADMIN)
        provider = TokenProvider.from_json(await self.body(request))
        key = self.backend.lookup_key(provider.key_id)
        if key is None or key.org_id != principal.org_id:
            raise ApiError(
                400,
                "invalid-token-provider",
                f"no key {provider.key_id!r} in this org",
                "keyId",
            )
        _require_scopes(principal, key.scopes, "a token provider signing with this key")
        self.backend.control.upsert_token_provider(
            token_provider_row(principal.org_id, provider, now_ms())
        )
        return Response(status_code=204)

    async def delete_token_provider(self, request: Request) -> Response:
        principal = self.guard(request, Scope.TOKENS_ADMIN)
        service = request.path_params["service"]
        if not self.backend.control.delete_token_provider(principal.org_id, service):
            raise ApiError(
                404, "token-provider-not-found", f"no token provider {service!r} in this org"
            )
        return Response(status_code=204)

    # -- token exchange ------------------------------------------------------------------------

    async def tokens(self, request: Request) -> Response:
        """RFC 8693 token exchange; errors are RFC 6749 bodies plus our finer ``code``."""
        try:
            form = await self._token_form(request)
            result = await asyncio.to_thread(self._exchange, form)
        except TokenExchangeError as error:
            return JSONResponse(
                {**error.body(), "code": error.reason},
                status_code=error.status,
                headers={"cache-control": "no-store"},
            )
        return JSONResponse(result, headers={"cache-control": "no-store", "pragma": "no-cache"})

    async def _token_form(self, request: Request) -> dict[str, str]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != FORM_CONTENT_TYPE:
            raise TokenExchangeError(
                "invalid_request", f"the body must be {FORM_CONTENT_TYPE}", "malformed-form"
            )
        try:
            raw = await read_body(request, self.backend.max_body_bytes)
        except ApiError as error:
            raise TokenExchangeError("invalid_request", error.message, "malformed-form") from None
        try:
            pairs = urllib.parse.parse_qsl(
                raw.decode("ascii"),
                keep_blank_values=True,
                strict_parsing=True,
                errors="strict",
                max_num_fields=32,
            )
        except (UnicodeDecodeError, ValueError) as error:
            raise TokenExchangeError(
                "invalid_request", f"the form is malformed: {error}", "malformed-form"
            ) from None
        fields: dict[str, str] = {}
        for name, value in pairs:
            if name in fields:  # RFC 6749 section 3.2: no parameter twice
                raise TokenExchangeError(
                    "invalid_request", f"{name} is given more than once", "malformed-form"
                )
            fields[name] = value
        return fields

    def _exchange(self, form: Mapping[str, str]) -> dict[str, str]:
        control = self.backend.control
        return exchange(
            form,
            org_lookup=lambda org_id: control.org(org_id) is not None,
            idp_lookup=lambda org_id: _idps(control.idps(org_id)),
            provider_lookup=lambda org_id, service: _provider(
                control.token_provider(org_id, service)
            ),
            key_lookup=self.backend.lookup_key,
            jwks=self.jwks,
            now=time.time(),
        )


def _idp(row: IdpRow) -> IdentityProvider:
    return IdentityProvider(row.aud, row.iss, row.algs, row.mapping, row.key, row.jwks_url)


def _idps(rows: Iterable[IdpRow]) -> list[IdentityProvider]:
    """The stored IdPs that still validate (all of them, unless the rules got stricter)."""
    idps = []
    for row in rows:
        try:
            idps.append(_idp(row))
        except AuthError:
            continue
    return idps


def _provider(row: TokenProviderRow | None) -> TokenProvider | None:
    return None if row is None else TokenProvider(row.service, row.key_id, row.mapping)
