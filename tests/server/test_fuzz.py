"""Bad input on every route of a live server: each answer is a 4xx with a stable code
(``{error, code}``), never a 5xx, and nothing changes. A hand-written matrix (bad query
parameters, bodies that are not JSON, nest too deep, hold lone surrogates or have the
wrong types, odd path segments) and schemathesis's negative mode over /openapi.json."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .test_e2e import ROOT, Server

BAD_VALUES = [
    "",
    "-1",
    "0",
    "1e400",
    "nan",
    "inf",
    "-inf",
    "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() says yes, int() too, then...
    "\u00b2",  # superscript two: isdigit() says yes, int() says no
    "9" * 40,
    "-" + "9" * 40,
    "--5",
    "\x00",
    "a" * 3000,
    "true",
    "[]",
    "{}",
    "2020-13-45T99:99:99Z",
    "0x10",
    " 1",
    "1.5",
    "💥",
    "ü",
]
BAD_BODIES: list[bytes] = [
    b"{",
    b"[]",
    b'"x"',
    b"1",
    b"null",
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"x": "\\ud800"}',
    b'{"\\udfff": 1}',
    b'{"x": "\xed\xa0\x80"}',
    b"\xff\xfe",
    b'{"event": 1e400}',
    b'{"event": NaN}',
    b'{"event": Infinity}',
    b'{"slug": 12345678901234567890123}',
    b'{"event": {"type": 1}}',
    b'{"event": {"type": ""}}',
    b'{"event": {"type": "toggle", "x": 123456789012345678901234567890}}',
    b'{"event": []}',
    b'{"context": []}',
    b'{"context": {"public": 1e400}}',
    b'{"targetMachineVersionId": []}',
    b'{"status": 1}',
    b'{"name": {}}',
    b'{"scopes": "x", "name": "n"}',
    b'{"use": 1, "name": "n"}',
    b'{"algs": "x", "iss": "i", "mapping": {}}',
    b'{"algs": ["HS256"], "iss": "i", "mapping": [], "key": "a2V5"}',
    b'{"keyId": 1, "service": "s", "mapping": {}}',
    b'{"code": 1}',
    b'{"slug": "x", "indexes": [1]}',
    b'{"dangerDataWillBeDeletedForever": "yes"}',
    b'{"indexSelectors": []}',
]
SEGMENTS = ["%00", "%ff", "💥", "a" * 300, "..", "%2e%2e", "a%2Fb", "%20"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("fuzz"))
    try:
        admin = srv.headers({})
        assert httpx.post(
            f"{srv.url}/machines/toggler", json={"slug": "s1"}, headers=srv.headers({"sid": "s1"})
        ).is_success
        made = httpx.post(
            f"{srv.url}/machines", json={"slug": "ixm", "indexes": ["ix"]}, headers=admin
        )
        assert made.status_code == 201, made.text
        code = (ROOT / "examples" / "toggler.py").read_text()
        version = httpx.post(
            f"{srv.url}/machines/ixm/v",
            json={"code": code, "indexSelectors": {"ix": "$.public.toggleCount"}},
            headers=admin,
        )
        assert version.status_code == 200, version.text
        yield srv
    finally:
        srv.stop()


def _concrete(path: str, server: Server) -> str:
    values = {
        "machine": "ixm" if "/indexes/" in path else "toggler",
        "instance": "s1",
        "index": "ix",
        "org": server.creds["orgId"],
    }
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def _snapshot(server: Server) -> Any:
    admin = server.headers({})
    view = httpx.get(f"{server.url}/machines/toggler/i/s1/admin", headers=admin).json()
    machines = httpx.get(f"{server.url}/machines", headers=admin).json()
    keys = httpx.get(f"{server.url}/keys", headers=admin).json()
    return view, sorted(m["slug"] for m in machines["machines"]), len(keys["keys"])


def _send(client: httpx.Client, problems: list[str], method: str, url: str, **kw: Any) -> None:
    try:
        response = client.request(method, url, **kw)
    except httpx.TransportError as exc:  # no answer at all
        problems.append(f"{method} {url[:160]} {kw.get('params', '')}: {exc!r}")
        return
    _check(response, problems)


def _check(response: httpx.Response, problems: list[str]) -> None:
    where = f"{response.request.method} {str(response.request.url)[:160]}"
    if response.status_code >= 500:
        problems.append(f"{where}: {response.status_code} {response.text[:200]}")
    elif response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        # POST /tokens answers RFC 6749's {error, error_description} (and our code).
        if not isinstance(body, dict) or "code" not in body or "error" not in body:
            problems.append(
                f"{where}: {response.status_code} without a code: {response.text[:120]}"
            )


def test_every_route_answers_bad_input_with_a_4xx_and_a_code(live: Server) -> None:
    doc = httpx.get(f"{live.url}/openapi.json").json()
    admin = live.headers({})
    before = _snapshot(live)
    problems: list[str] = []
    with httpx.Client(headers=admin, timeout=30) as client:
        for path, operations in doc["paths"].items():
            url = live.url + _concrete(path, live)
            for method, operation in operations.items():
                if not isinstance(operation, dict) or method == "parameters":
                    continue
                names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
                for name in names:
                    for value in BAD_VALUES:
                        _send(client, problems, method.upper(), url, params={name: value})
                if method in ("post", "put", "delete", "patch"):
                    for body in BAD_BODIES:
                        _send(
                            client,
                            problems,
                            method.upper(),
                            url,
                            content=body,
                            headers={"content-type": "application/json"},
                        )
        templates = [
            "/machines/{s}",
            "/machines/{s}/i",
            "/machines/{s}/v",
            "/machines/toggler/i/{s}",
            "/machines/toggler/i/{s}/events",
            "/machines/toggler/i/{s}/admin",
            "/machines/ixm/indexes/{s}/query",
            "/keys/{s}",
            "/token-providers/{s}",
            "/nowhere/{s}",
        ]
        for template in templates:
            for segment in SEGMENTS:
                for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
                    url = live.url + template.replace("{s}", segment)
                    _send(client, problems, method, url, json={})
    assert problems == [], "\n".join(problems[:40])
    assert _snapshot(live) == before


def test_schemathesis_negative_data_never_gets_a_5xx(live: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    headers = live.headers({})
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = 0
    for operation in operations:
        pinned = {
            name: value
            for name, value in {
                "machine": "ixm" if "/indexes/" in operation.path else "toggler",
                "instance": "s1",
                "index": "ix",
            }.items()
            if "{" + name + "}" in operation.path
        }

        @given(case=operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=pinned))
        @settings(
            max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[schemathesis.checks.not_a_server_error])

        try:
            check()
        except Unsatisfiable:
            continue  # nothing of it can be made invalid (no parameters, no body)
        fuzzed += 1
    assert fuzzed >= 15
