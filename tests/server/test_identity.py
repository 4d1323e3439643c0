"""Identity routes end to end against a real `backstate serve`: orgs, keys, IdPs, token
providers and token exchange (HS256, RS256 via a JWKS URL, anonymous sessions)."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest

from backstate.auth import (
    ACCESS_TOKEN_TYPE,
    ANONYMOUS_SERVICE,
    SCOPE_PRESETS,
    TOKEN_EXCHANGE_GRANT_TYPE,
    sign_token,
)

from ..auth.idp import b64url, hs256_by_hand, public_jwk, rsa_key, sign
from .test_e2e import Server, _free_port

PRODUCTION = [s.value for s in SCOPE_PRESETS["production"]]
HS_SECRET = b"a shared secret of more than thirty-two bytes"


def start(tmp: Path, *options: str) -> tuple[Server, Callable[[], None]]:
    """A ``Server`` whose output is drained: the server logs every error response, and a
    full pipe would block it."""
    srv = Server(tmp, options=options)
    stream = srv.process.stdout
    assert stream is not None
    pump = threading.Thread(target=stream.read, daemon=True)
    pump.start()

    def stop() -> None:
        srv.process.terminate()
        srv.process.wait(10)
        pump.join(5)
        srv.stop()

    return srv, stop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The tests' JWKS documents are served on 127.0.0.1.
    srv, stop = start(tmp_path_factory.mktemp("identity"), "--allow-private-jwks")
    try:
        yield srv
    finally:
        stop()


class Jwks:
    """A tiny IdP JWKS endpoint on 127.0.0.1, serving ``document`` at ``url``."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        jwks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.hits += 1
                body = json.dumps(jwks.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    served = Jwks()
    try:
        yield served
    finally:
        served.close()


# -- helpers --------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def key_headers(key_id: str, secret: str, claims: dict[str, Any] | None = None) -> dict[str, str]:
    return bearer(sign_token(key_id, secret, claims or {"sub": "test"}, expires_in_s=600))


def admin(server: Server) -> dict[str, str]:
    return server.headers({"sub": "admin"})


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json().get("code")


def new_key(server: Server, headers: dict[str, str], name: str, **body: Any) -> tuple[str, str]:
    r = httpx.post(f"{server.url}/keys", json={"name": name, **body}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["id"], r.json()["key"]


def exchange(
    server: Server, org_id: str, service: str, subject_token: str, **extra: str
) -> httpx.Response:
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT_TYPE,
        "audience": f"https://tokens.statebacked.dev/{org_id}/{service}",
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "subject_token": subject_token,
        **extra,
    }
    return httpx.post(f"{server.url}/tokens", data=form)


def access_token(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE and body["token_type"] == "Bearer"
    assert response.headers["cache-control"] == "no-store"
    return str(body["access_token"])


def act(token: str) -> Any:
    return jwt.decode(token, options={"verify_signature": False})["act"]


def oauth_error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["error_description"]
    return response.status_code, body["error"], body["code"]


def toggler_round_trip(server: Server, token: str, name: str) -> None:
    """The exchanged token creates, toggles and reads the toggler instance ``name``, and
    the authorizer (which compares ``sid`` with the instance name) refuses any other."""
    headers = bearer(token)
    r = httpx.post(f"{server.url}/machines/toggler", json={"slug": name}, headers=headers)
    assert r.status_code == 200, r.text
    r = httpx.post(
        f"{server.url}/machines/toggler/i/{name}/events",
        json={"event": "toggle"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    r = httpx.get(f"{server.url}/machines/toggler/i/{name}", headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["publicContext"]) == ("off", {"toggleCount": 1})
    other = f"{name}-other"
    r = httpx.post(
        f"{server.url}/machines/toggler",
        json={"slug": other},
        headers=server.headers({"sid": other}),
    )
    assert r.status_code == 200, r.text
    r = httpx.get(f"{server.url}/machines/toggler/i/{other}", headers=headers)
    assert error(r) == (403, "rejected-by-machine-authorizer")
    r = httpx.post(
        f"{server.url}/machines/toggler/i/{other}/events", json={"event": "toggle"}, headers=headers
    )
    assert error(r) == (403, "rejected-by-machine-authorizer")


def anonymous_token(org_id: str, sid: str, **extra: Any) -> str:
    """The subject token @statebacked/client's anonymous-token-config signs."""
    issuer = f"https://{org_id}.anonymous.auth.statebacked.dev"
    iat = int(time.time())
    claims = {"aud": issuer, "iss": issuer, "iat": iat, "exp": iat + 86400, "sid": sid}
    claims.update({"did": sid, **extra})
    return hs256_by_hand({"alg": "HS256", "typ": "JWT"}, claims, org_id.encode())


def snapshot(server: Server, headers: dict[str, str]) -> tuple[Any, ...]:
    return tuple(
        httpx.get(f"{server.url}{path}", headers=headers).json()
        for path in ("/keys", "/idps", "/token-providers", "/orgs")
    )


# -- orgs -----------------------------------------------------------------------------------


def test_first_start_org_has_anonymous_access(server: Server) -> None:
    org_id = server.creds["orgId"]
    orgs = httpx.get(f"{server.url}/orgs", headers=admin(server)).json()["orgs"]
    assert len(orgs) == 1 and orgs[0].pop("createdAt").endswith("Z")
    assert orgs == [
        {
            "id": org_id,
            "name": "default",
            "role": "admin",
            "limits": {"monthlyEventsLimit": None, "monthlyReadsLimit": None},
        }
    ]
    issuer = f"https://{org_id}.anonymous.auth.statebacked.dev"
    idps = httpx.get(f"{server.url}/idps", headers=admin(server)).json()
    assert idps == {
        "idps": [
            {
                "iss": issuer,
                "aud": issuer,
                "algs": ["HS256"],
                "mapping": {"sid.$": "$.sid", "did.$": "$.did"},
            }
        ]
    }
    providers = httpx.get(f"{server.url}/token-providers", headers=admin(server)).json()
    [provider] = providers["tokenProviders"]
    assert provider["service"] == ANONYMOUS_SERVICE
    assert provider["mapping"] == {"sid.$": "$.sid", "did.$": "$.did", "auth": "anonymous"}
    keys = {
        k["id"]: k for k in httpx.get(f"{server.url}/keys", headers=admin(server)).json()["keys"]
    }
    assert keys[provider["keyId"]]["scopes"] == PRODUCTION
    assert keys[server.creds["keyId"]]["name"] == "admin"


def test_anonymous_session_as_the_client_makes_it(server: Server) -> None:
    org_id = server.creds["orgId"]
    sid = f"anon-{uuid.uuid4().hex[:8]}"
    # Claims beyond sid/did never get through, whatever the client puts in its token.
    subject = anonymous_token(org_id, sid, auth="admin", role="root")
    token = access_token(exchange(server, org_id, ANONYMOUS_SERVICE, subject))
    assert act(token) == {"sid": sid, "did": sid, "auth": "anonymous"}
    toggler_round_trip(server, token, sid)
    # The anonymous key is a production key: no admin routes.
    assert error(httpx.get(f"{server.url}/keys", headers=bearer(token))) == (403, "missing-scope")
    # Signed with anything but the org id, the session is refused.
    forged = hs256_by_hand(
        {"alg": "HS256", "typ": "JWT"},
        jwt.decode(subject, options={"verify_signature": False}),
        b"not-the-org-id",
    )
    assert oauth_error(exchange(server, org_id, ANONYMOUS_SERVICE, forged)) == (
        400,
        "invalid_request",
        "bad-signature",
    )


def test_anonymous_and_production_keys_cannot_move_instances_between_versions(
    server: Server,
) -> None:
    # Moving an instance to another version is an operator's act (the published client
    # has it under machineInstances.admin), and no machine authorizer is asked: with
    # instances.write, any anonymous visitor could have upgraded anyone's instance.
    org_id = server.creds["orgId"]
    sid = f"anon-{uuid.uuid4().hex[:8]}"
    anonymous = bearer(
        access_token(exchange(server, org_id, ANONYMOUS_SERVICE, anonymous_token(org_id, sid)))
    )
    production = key_headers(
        *new_key(server, admin(server), "prod", use="production"), {"sid": sid}
    )
    base = f"{server.url}/machines/toggler"
    assert httpx.post(base, json={"slug": sid}, headers=anonymous).status_code == 200
    source = httpx.get(f"{base}/i/{sid}/admin", headers=admin(server)).json()["machineVersion"][
        "id"
    ]
    code = (Path(__file__).parents[2] / "examples" / "toggler.py").read_text()
    made = httpx.post(f"{base}/v", json={"code": code, "makeCurrent": False}, headers=admin(server))
    target = made.json()["machineVersionId"]
    migration = (
        "def upgrade_state(p, c):\n    return p\n\ndef upgrade_context(o, n, c):\n    return c\n"
    )
    provisional = httpx.post(
        f"{base}/migrations",
        json={"fromMachineVersionId": source, "toMachineVersionId": target, "code": migration},
        headers=admin(server),
    ).json()["machineVersionMigrationId"]
    assert httpx.put(f"{base}/migrations/{provisional}", headers=admin(server)).status_code == 200
    desire = {"targetMachineVersionId": target}
    for headers in (anonymous, production):
        refused = httpx.put(f"{base}/i/{sid}/v", json=desire, headers=headers)
        assert error(refused) == (403, "missing-scope"), refused.text
    view = httpx.get(f"{base}/i/{sid}/admin", headers=admin(server)).json()
    assert "desiredMachineVersion" not in view and view["machineVersion"]["id"] == source
    assert httpx.put(f"{base}/i/{sid}/v", json=desire, headers=admin(server)).status_code == 201


def test_create_orgs_and_isolation(server: Server) -> None:
    a = admin(server)
    a_org, a_key = server.creds["orgId"], server.creds["keyId"]
    r = httpx.post(f"{server.url}/orgs", json={"name": "second"}, headers=a)
    assert r.status_code == 200, r.text
    b_org, b_admin = r.json()["id"], r.json()["adminKey"]
    assert b_org.startswith("org_") and b_org != a_org
    b = key_headers(b_admin["id"], b_admin["key"])
    [org] = httpx.get(f"{server.url}/orgs", headers=b).json()["orgs"]
    assert (org["id"], org["name"], org["role"]) == (b_org, "second", "admin")
    # B got anonymous access of its own.
    b_keys = httpx.get(f"{server.url}/keys", headers=b).json()["keys"]
    assert sorted(k["name"] for k in b_keys) == ["admin", "anonymous-access"]
    [b_idp] = httpx.get(f"{server.url}/idps", headers=b).json()["idps"]
    assert b_idp["iss"] == f"https://{b_org}.anonymous.auth.statebacked.dev"
    subject = anonymous_token(b_org, "b-session")
    b_token = access_token(exchange(server, b_org, ANONYMOUS_SERVICE, subject))
    assert act(b_token)["sid"] == "b-session"
    # ... and sees nothing of A: A's machines, keys, IdPs and token providers are 404.
    assert httpx.get(f"{server.url}/machines/toggler", headers=b).status_code == 404
    assert (
        httpx.get(f"{server.url}/machines/toggler/i/b-session", headers=bearer(b_token)).status_code
        == 404
    )
    assert error(httpx.delete(f"{server.url}/keys/{a_key}", headers=b)) == (404, "key-not-found")
    a_issuer = f"https://{a_org}.anonymous.auth.statebacked.dev"
    r = httpx.request(
        "DELETE", f"{server.url}/idps", json={"aud": a_issuer, "iss": a_issuer}, headers=b
    )
    assert error(r) == (404, "idp-not-found")
    p_id, _ = new_key(server, a, "for-a-provider", use="production")
    r = httpx.post(
        f"{server.url}/token-providers",
        json={"service": "only-a", "keyId": p_id, "mapping": {}},
        headers=a,
    )
    assert r.status_code == 204, r.text
    r = httpx.delete(f"{server.url}/token-providers/only-a", headers=b)
    assert error(r) == (404, "token-provider-not-found")
    r = httpx.post(
        f"{server.url}/token-providers",
        json={"service": "steal", "keyId": p_id, "mapping": {}},
        headers=b,
    )
    assert error(r) == (400, "invalid-token-provider") and r.json()["parameter"] == "keyId"
    # B's tokens cannot pick A with the org header.
    r = httpx.get(f"{server.url}/keys", headers={**b, "x-statebacked-org-id": a_org})
    assert error(r) == (403, "missing-org")
    # B's anonymous session is no session of A's (different key, different issuer).
    r = exchange(server, a_org, ANONYMOUS_SERVICE, subject)
    assert oauth_error(r) == (400, "invalid_request", "unknown-idp")
    # A still has all its things.
    assert httpx.get(f"{server.url}/keys", headers=a).json()["keys"][0]["id"] == a_key
    assert len(httpx.get(f"{server.url}/idps", headers=a).json()["idps"]) == 1
    assert httpx.delete(f"{server.url}/token-providers/only-a", headers=a).status_code == 204

    # Without anonymous access: only the admin key.
    r = httpx.post(
        f"{server.url}/orgs", json={"name": "closed", "allowAnonymousAccess": False}, headers=a
    )
    c_org, c_admin = r.json()["id"], r.json()["adminKey"]
    c = key_headers(c_admin["id"], c_admin["key"])
    assert [k["name"] for k in httpx.get(f"{server.url}/keys", headers=c).json()["keys"]] == [
        "admin"
    ]
    assert httpx.get(f"{server.url}/idps", headers=c).json() == {"idps": []}
    assert httpx.get(f"{server.url}/token-providers", headers=c).json() == {"tokenProviders": []}
    r = exchange(server, c_org, ANONYMOUS_SERVICE, anonymous_token(c_org, "s"))
    assert oauth_error(r) == (400, "invalid_target", "unknown-service")


def test_create_org_needs_org_write_and_a_valid_body(server: Server) -> None:
    a = admin(server)
    p_id, p_secret = new_key(server, a, "no-org-write", use="production")
    r = httpx.post(f"{server.url}/orgs", json={"name": "x"}, headers=key_headers(p_id, p_secret))
    assert error(r) == (403, "missing-scope")
    for body, parameter in (
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 3}, "name"),
        ({"name": "x", "allowAnonymousAccess": "yes"}, "allowAnonymousAccess"),
    ):
        r = httpx.post(f"{server.url}/orgs", json=body, headers=a)
        assert error(r) == (400, "invalid-parameter"), body
        assert r.json()["parameter"] == parameter
    assert httpx.get(f"{server.url}/orgs", headers=key_headers(p_id, p_secret)).status_code == 403


# -- keys -----------------------------------------------------------------------------------


def test_keys_create_use_list_delete(server: Server) -> None:
    a = admin(server)
    key_id, secret = new_key(server, a, "production key", use="production")
    assert key_id.startswith("sbk_") and secret.startswith("sbsec_")
    mine = key_headers(key_id, secret, {"sid": "key-user"})
    r = httpx.post(f"{server.url}/machines/toggler", json={"slug": "key-user"}, headers=mine)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{server.url}/machines/toggler/i/key-user", headers=mine).status_code == 200
    # Scopes are enforced.
    for method, path in (
        ("GET", "/machines"),
        ("GET", "/keys"),
        ("POST", "/keys"),
        ("GET", "/idps"),
        ("GET", "/orgs"),
        ("GET", "/token-providers"),
        ("DELETE", f"/keys/{key_id}"),
    ):
        r = httpx.request(
            method, f"{server.url}{path}", json={"name": "x", "use": "ci"}, headers=mine
        )
        assert error(r) == (403, "missing-scope"), path
    # The list shows every key of the org, and no secret.
    r = httpx.get(f"{server.url}/keys", headers=a)
    assert secret not in r.text and server.creds["secret"] not in r.text
    listed = {k["id"]: k for k in r.json()["keys"]}
    assert set(listed[key_id]) == {"id", "name", "scopes", "createdAt"}
    assert (listed[key_id]["name"], listed[key_id]["scopes"]) == ("production key", PRODUCTION)
    # Deleted, its tokens stop working at once.
    assert httpx.delete(f"{server.url}/keys/{key_id}", headers=a).status_code == 204
    r = httpx.get(f"{server.url}/machines/toggler/i/key-user", headers=mine)
    assert error(r) == (401, "unknown-key")
    assert error(httpx.delete(f"{server.url}/keys/{key_id}", headers=a)) == (404, "key-not-found")
    assert key_id not in {
        k["id"] for k in httpx.get(f"{server.url}/keys", headers=a).json()["keys"]
    }


def test_keys_explicit_scopes_no_escalation_and_bad_bodies(server: Server) -> None:
    a = admin(server)
    k_id, k_secret = new_key(server, a, "key-maker", scopes=["org.keys.write", "state.read"])
    maker = key_headers(k_id, k_secret)
    # A key hands out only scopes it holds.
    new_key(server, maker, "reader", scopes=["state.read"])
    r = httpx.post(f"{server.url}/keys", json={"name": "x", "use": "production"}, headers=maker)
    assert error(r) == (403, "missing-scope")
    before = httpx.get(f"{server.url}/keys", headers=a).json()
    for body, code, parameter in (
        ({"name": "x", "use": "production", "scopes": ["state.read"]}, "use-and-scopes", "use"),
        ({"name": "x", "scopes": ["state.read", "root"]}, "unknown-scope", "scopes"),
        ({"name": "x", "use": "everything"}, "unknown-use", "use"),
        ({"name": "x"}, "missing-scopes", "scopes"),
        ({"name": "x", "scopes": "state.read"}, "invalid-parameter", "scopes"),
        ({"use": "production"}, "invalid-parameter", "name"),
    ):
        r = httpx.post(f"{server.url}/keys", json=body, headers=a)
        assert error(r) == (400, code), body
        assert r.json()["parameter"] == parameter
    r = httpx.post(f"{server.url}/keys", content=b"{nope", headers=a)
    assert error(r) == (400, "invalid-json")
    assert httpx.get(f"{server.url}/keys", headers=a).json() == before


# -- token exchange -------------------------------------------------------------------------


def add_provider(server: Server, service: str, mapping: dict[str, Any]) -> str:
    key_id, _ = new_key(server, admin(server), f"{service}-key", use="production")
    r = httpx.post(
        f"{server.url}/token-providers",
        json={"service": service, "keyId": key_id, "mapping": mapping},
        headers=admin(server),
    )
    assert r.status_code == 204, r.text
    return key_id


def test_hs256_idp_exchange_upsert_and_delete(server: Server) -> None:
    a, org_id = admin(server), server.creds["orgId"]
    idp = {
        "iss": "https://hs.example",
        "aud": "backstate-app",
        "algs": ["HS256"],
        "key": b64url(HS_SECRET),
        "mapping": {"sid.$": "$.sub", "email.$": "$.email"},
    }
    assert httpx.post(f"{server.url}/idps", json=idp, headers=a).status_code == 204
    listed = httpx.get(f"{server.url}/idps", headers=a)
    assert idp["key"] not in listed.text
    assert {k: v for k, v in idp.items() if k != "key"} in listed.json()["idps"]
    key_id = add_provider(server, "hs-app", {"sid.$": "$.sid", "via": "hs256"})
    provider = {"service": "hs-app", "keyId": key_id, "mapping": {"sid.$": "$.sid", "via": "hs256"}}
    assert (
        provider in httpx.get(f"{server.url}/token-providers", headers=a).json()["tokenProviders"]
    )

    def subject(**claims: Any) -> str:
        base = {"iss": "https://hs.example", "aud": "backstate-app", "exp": int(time.time()) + 300}
        return jwt.encode({**base, **claims}, HS_SECRET, algorithm="HS256")

    token = access_token(exchange(server, org_id, "hs-app", subject(sub="hs-user", email="e@x")))
    assert act(token) == {"sid": "hs-user", "via": "hs256"}
    toggler_round_trip(server, token, "hs-user")

    # Upsert by aud/iss: a new mapping replaces the old one, no second IdP.
    changed = {**idp, "mapping": {"sid.$": "$.email"}}
    assert httpx.post(f"{server.url}/idps", json=changed, headers=a).status_code == 204
    hs = [
        i
        for i in httpx.get(f"{server.url}/idps", headers=a).json()["idps"]
        if i.get("iss") == "https://hs.example"
    ]
    assert [i["mapping"] for i in hs] == [{"sid.$": "$.email"}]
    token = access_token(exchange(server, org_id, "hs-app", subject(sub="u", email="mail-user")))
    assert act(token) == {"sid": "mail-user", "via": "hs256"}

    # Deleted, the IdP is no longer trusted, at once.
    body = {"aud": "backstate-app", "iss": "https://hs.example"}
    assert httpx.request("DELETE", f"{server.url}/idps", json=body, headers=a).status_code == 204
    r = exchange(server, org_id, "hs-app", subject(sub="u", email="e"))
    assert oauth_error(r) == (400, "invalid_request", "unknown-idp")
    r = httpx.request("DELETE", f"{server.url}/idps", json=body, headers=a)
    assert error(r) == (404, "idp-not-found")
    assert httpx.delete(f"{server.url}/token-providers/hs-app", headers=a).status_code == 204
    r = httpx.delete(f"{server.url}/token-providers/hs-app", headers=a)
    assert error(r) == (404, "token-provider-not-found")


def test_rs256_idp_via_jwks_url(server: Server, jwks: Jwks) -> None:
    a, org_id = admin(server), server.creds["orgId"]
    signer = rsa_key("jwks-idp")
    jwks.document = {"keys": [public_jwk(signer, kid="k1", alg="RS256", use="sig")]}
    idp = {
        "iss": "https://rs.example",
        "algs": ["RS256"],
        "jwksUrl": jwks.url,
        "mapping": {"sid.$": "$.sub", "team.$": "$.org.team"},
    }
    assert httpx.post(f"{server.url}/idps", json=idp, headers=a).status_code == 204
    assert idp in httpx.get(f"{server.url}/idps", headers=a).json()["idps"]
    add_provider(server, "rs-app", {"sid.$": "$.sid", "team.$": "$.team"})
    claims = {"iss": "https://rs.example", "sub": "rs-user", "org": {"team": "blue"}}
    claims["exp"] = int(time.time()) + 300
    token = access_token(exchange(server, org_id, "rs-app", sign(claims, signer, "RS256", "k1")))
    assert act(token) == {"sid": "rs-user", "team": "blue"}
    assert jwks.hits == 1
    toggler_round_trip(server, token, "rs-user")
    # The document is cached: another exchange does not fetch it again.
    access_token(exchange(server, org_id, "rs-app", sign(claims, signer, "RS256", "k1")))
    assert jwks.hits == 1
    # A token signed by some other key under the same kid is refused.
    impostor = sign(claims, rsa_key("impostor"), "RS256", "k1")
    r = exchange(server, org_id, "rs-app", impostor)
    assert oauth_error(r) == (400, "invalid_request", "bad-signature")
    # An IdP whose JWKS cannot be fetched: 503, retry later.
    down = {
        **idp,
        "iss": "https://down.example",
        "jwksUrl": f"http://127.0.0.1:{_free_port()}/jwks",
    }
    assert httpx.post(f"{server.url}/idps", json=down, headers=a).status_code == 204
    r = exchange(
        server,
        org_id,
        "rs-app",
        sign({**claims, "iss": "https://down.example"}, signer, "RS256", "k1"),
    )
    assert oauth_error(r) == (503, "temporarily_unavailable", "jwks-unavailable")


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Server]:
    """A server as ``serve`` runs by default: no JWKS from private addresses."""
    srv, stop = start(tmp_path)
    try:
        yield srv
    finally:
        stop()


class RawPort:
    """A TCP port on 127.0.0.1 that answers every connection with ``reply`` and closes."""

    def __init__(self, reply: bytes) -> None:
        self.hits = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.hits += 1
                with conn:
                    conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()


def test_jwks_urls_cannot_reach_private_addresses_and_fail_alike(
    strict: Server, jwks: Jwks
) -> None:
    a, org_id = admin(strict), strict.creds["orgId"]
    signer = rsa_key("jwks-idp")
    jwks.document = {"keys": [public_jwk(signer, kid="k1", alg="RS256", use="sig")]}
    add_provider(strict, "ssrf", {"sid.$": "$.sub"})
    ssh = RawPort(b"SSH-2.0-OpenSSH_9.6\r\n")
    web = RawPort(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
    port = jwks.url.split(":")[2].split("/")[0]
    urls = {
        "the JWKS itself": jwks.url,
        "by name": jwks.url.replace("127.0.0.1", "localhost"),
        "closed port": f"http://127.0.0.1:{_free_port()}/jwks",
        "not HTTP": f"http://127.0.0.1:{ssh.port}/",
        "some HTTP service": f"http://127.0.0.1:{web.port}/",
        "IPv4 in IPv6": f"http://[::ffff:127.0.0.1]:{port}/.well-known/jwks.json",
        "cloud metadata": "http://169.254.169.254/latest/meta-data/",
        "private network": "http://10.0.0.1/jwks",
        "unspecified": f"http://0.0.0.0:{port}/.well-known/jwks.json",
    }
    answers = {}
    try:
        for label, url in urls.items():
            iss = f"https://{abs(hash(label))}.ssrf.example"
            idp = {"iss": iss, "algs": ["RS256"], "jwksUrl": url, "mapping": {"sub.$": "$.sub"}}
            assert httpx.post(f"{strict.url}/idps", json=idp, headers=a).status_code == 204
            claims = {"iss": iss, "sub": "u", "exp": int(time.time()) + 300}
            started = time.monotonic()
            r = exchange(strict, org_id, "ssrf", sign(claims, signer, "RS256", "k1"))
            assert time.monotonic() - started < 2, label  # refused before any connection
            assert oauth_error(r) == (503, "temporarily_unavailable", "jwks-unavailable"), label
            answers[label] = r.json()
        # Nothing was fetched, and no answer tells one target from another.
        assert (jwks.hits, ssh.hits, web.hits) == (0, 0, 0)
        assert len({json.dumps(body, sort_keys=True) for body in answers.values()}) == 1
    finally:
        ssh.close()
        web.close()


def test_bad_exchanges_are_clear_4xx_and_change_nothing(server: Server) -> None:
    a, org_id = admin(server), server.creds["orgId"]
    idp = {
        "iss": "https://bad.example",
        "algs": ["HS256"],
        "key": b64url(HS_SECRET),
        "mapping": {"sid.$": "$.sub"},
    }
    assert httpx.post(f"{server.url}/idps", json=idp, headers=a).status_code == 204
    add_provider(server, "bad-app", {"sid.$": "$.sid"})
    now = int(time.time())
    good = jwt.encode(
        {"iss": "https://bad.example", "sub": "u", "exp": now + 300}, HS_SECRET, algorithm="HS256"
    )
    expired = jwt.encode(
        {"iss": "https://bad.example", "sub": "u", "exp": now - 60}, HS_SECRET, algorithm="HS256"
    )
    # Another org's IdP: B trusts https://b-only.example, A does not.
    r = httpx.post(f"{server.url}/orgs", json={"name": "b"}, headers=a)
    b_admin = r.json()["adminKey"]
    b = key_headers(b_admin["id"], b_admin["key"])
    b_idp = {**idp, "iss": "https://b-only.example"}
    assert httpx.post(f"{server.url}/idps", json=b_idp, headers=b).status_code == 204
    b_token = jwt.encode(
        {"iss": "https://b-only.example", "sub": "u", "exp": now + 300},
        HS_SECRET,
        algorithm="HS256",
    )
    before = snapshot(server, a)

    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT_TYPE,
        "audience": f"https://tokens.statebacked.dev/{org_id}/bad-app",
        "subject_token": good,
    }
    url = f"{server.url}/tokens"
    form_type = {"content-type": "application/x-www-form-urlencoded"}
    cases: list[tuple[httpx.Response, tuple[int, str, str]]] = [
        (httpx.post(url, json=form), (400, "invalid_request", "malformed-form")),
        (
            httpx.post(url, content=b"grant_type", headers=form_type),
            (400, "invalid_request", "malformed-form"),
        ),
        (
            httpx.post(url, content=b"subject_token=%C3", headers=form_type),
            (400, "invalid_request", "malformed-form"),
        ),
        (
            httpx.post(
                url, content=urlencode([*form.items(), ("grant_type", "x")]), headers=form_type
            ),
            (400, "invalid_request", "malformed-form"),
        ),
        (
            httpx.post(url, content=b"", headers=form_type),
            (400, "invalid_request", "missing-grant-type"),
        ),
        (
            httpx.post(url, data={**form, "grant_type": "client_credentials"}),
            (400, "unsupported_grant_type", "grant-type"),
        ),
        (
            httpx.post(url, data={k: v for k, v in form.items() if k != "subject_token"}),
            (400, "invalid_request", "missing-subject-token"),
        ),
        (
            exchange(server, org_id, "no-such-service", good),
            (400, "invalid_target", "unknown-service"),
        ),
        (exchange(server, "org_nope", "bad-app", good), (400, "invalid_target", "unknown-org")),
        (
            httpx.post(url, data={**form, "audience": "https://elsewhere/x"}),
            (400, "invalid_target", "bad-audience"),
        ),
        (exchange(server, org_id, "bad-app", expired), (400, "invalid_request", "token-expired")),
        (
            exchange(server, org_id, "bad-app", "not.a.jwt"),
            (400, "invalid_request", "malformed-token"),
        ),
        (exchange(server, org_id, "bad-app", b_token), (400, "invalid_request", "unknown-idp")),
        (
            exchange(
                server,
                org_id,
                "bad-app",
                good,
                requested_token_type="urn:ietf:params:oauth:token-type:id_token",
            ),
            (400, "invalid_request", "requested-token-type"),
        ),
    ]
    for response, expected in cases:
        assert oauth_error(response) == expected, response.text
    # The good token still works, and nothing changed on either side.
    assert act(access_token(exchange(server, org_id, "bad-app", good))) == {"sid": "u"}
    assert snapshot(server, a) == before
    assert len(httpx.get(f"{server.url}/idps", headers=b).json()["idps"]) == 2


def test_idp_and_token_provider_configuration_errors(server: Server) -> None:
    a = admin(server)
    p_id, p_secret = new_key(server, a, "plain", use="production")
    t_id, t_secret = new_key(server, a, "tokens-admin-only", scopes=["tokens.admin"])
    plain, tokens_admin = key_headers(p_id, p_secret), key_headers(t_id, t_secret)
    before = snapshot(server, a)
    key = b64url(HS_SECRET)
    for body, code, parameter in (
        ({"algs": ["HS256"], "key": key, "mapping": {}}, "invalid-idp", "aud"),
        ({"iss": "i", "algs": ["none"], "key": key, "mapping": {}}, "invalid-idp", "algs"),
        ({"iss": "i", "algs": ["HS256"], "mapping": {}}, "invalid-idp", "key"),
        (
            {"iss": "i", "algs": ["HS256"], "key": key, "jwksUrl": "https://j", "mapping": {}},
            "invalid-idp",
            "key",
        ),
        ({"iss": "i", "algs": ["RS256"], "key": key, "mapping": {}}, "invalid-idp", "key"),
        (
            {"iss": "i", "algs": ["RS256"], "jwksUrl": "file:///etc/passwd", "mapping": {}},
            "invalid-idp",
            "jwksUrl",
        ),
        (
            {"iss": "i", "algs": ["HS256"], "key": key, "mapping": {"a": 1, "a.$": "$.b"}},
            "invalid-idp",
            "mapping",
        ),
        (
            {"iss": "i", "aud": "", "algs": ["HS256"], "key": key, "mapping": {}},
            "invalid-parameter",
            "aud",
        ),
    ):
        r = httpx.post(f"{server.url}/idps", json=body, headers=a)
        assert error(r) == (400, code), (body, r.text)
        assert r.json()["parameter"] == parameter
    for body, code, parameter in (
        (
            {"service": "bad service", "keyId": p_id, "mapping": {}},
            "invalid-token-provider",
            "service",
        ),
        ({"service": "s", "keyId": "sbk_nope", "mapping": {}}, "invalid-token-provider", "keyId"),
        (
            {"service": "s", "keyId": p_id, "mapping": {"x.$": "not a path ["}},
            "invalid-token-provider",
            "mapping",
        ),
    ):
        r = httpx.post(f"{server.url}/token-providers", json=body, headers=a)
        assert error(r) == (400, code), (body, r.text)
        assert r.json()["parameter"] == parameter
    r = httpx.request("DELETE", f"{server.url}/idps", json={}, headers=a)
    assert error(r) == (400, "invalid-parameter")
    # tokens.admin is required, and it cannot hand out a key stronger than itself.
    for method, path in (
        ("GET", "/idps"),
        ("POST", "/idps"),
        ("DELETE", "/idps"),
        ("GET", "/token-providers"),
        ("POST", "/token-providers"),
        ("DELETE", "/token-providers/x"),
    ):
        r = httpx.request(method, f"{server.url}{path}", json={"iss": "i"}, headers=plain)
        assert error(r) == (403, "missing-scope"), path
    r = httpx.post(
        f"{server.url}/token-providers",
        json={"service": "escalate", "keyId": server.creds["keyId"], "mapping": {}},
        headers=tokens_admin,
    )
    assert error(r) == (403, "missing-scope")
    assert snapshot(server, a) == before


def test_credentials_survive_a_restart(tmp_path: Path) -> None:
    """IdPs and token providers are in the control plane: a restart keeps them."""
    first, stop = start(tmp_path)
    try:
        org_id = first.creds["orgId"]
        r = httpx.post(
            f"{first.url}/idps",
            json={
                "iss": "https://keep.example",
                "algs": ["HS256"],
                "key": b64url(HS_SECRET),
                "mapping": {"sid.$": "$.sub"},
            },
            headers=admin(first),
        )
        assert r.status_code == 204
        add_provider(first, "keep", {"sid.$": "$.sid"})
    finally:
        stop()
    second, stop = start(tmp_path)
    try:
        assert second.creds["orgId"] == org_id
        subject = jwt.encode(
            {"iss": "https://keep.example", "sub": "kept", "exp": int(time.time()) + 60},
            HS_SECRET,
            algorithm="HS256",
        )
        assert act(access_token(exchange(second, org_id, "keep", subject))) == {"sid": "kept"}
        anonymous = exchange(second, org_id, ANONYMOUS_SERVICE, anonymous_token(org_id, "s"))
        assert act(access_token(anonymous))["auth"] == "anonymous"
    finally:
        stop()
