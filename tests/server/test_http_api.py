"""End to end: the HTTP API mapper (``/http-api/{org}/machines/{machine}/{slug}``) on a
real `backstate serve` process, with machines uploaded through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.test_e2e import ROOT, Server

SECRET = "s3cret-for-tests"

# A machine whose mappers exercise the edge cases: the handler echoes what it got into
# the event, takes its instance name and auth context from the query, and fails on
# demand; one mapper is async, one raises, one returns the machine's output.
PROBE = """
from typing import Any

from backstate.chart import assign, setup

machine = setup().create_machine({
    "id": "probe",
    "initial": "open",
    "context": {"public": {"seen": []}, "secret": "kept"},
    "states": {
        "open": {
            "on": {
                "seen": {"actions": assign(
                    {"public": lambda c, e: {"seen": [*c["public"]["seen"], e["request"]]}}
                )},
                "close": "closed",
            }
        },
        "closed": {"type": "final"},
    },
    "output": lambda c, e: {"seen": len(c["public"]["seen"])},
})


def allow_read(**_: Any) -> bool:
    return True


def allow_write(*, auth_context: dict[str, Any], **_: Any) -> bool:
    return auth_context.get("sub") == "ok"


class Teapot(Exception):
    status_code = 418


def handler(request: dict[str, Any]) -> dict[str, Any]:
    query = request["query"]
    if "fail" in query:
        raise ValueError("the handler refused: " + query["fail"])
    if "teapot" in query:
        raise Teapot("short and stout")
    if "bad" in query:
        return {"event": "seen"}
    if "exit" in query:
        raise SystemExit(1)
    if "interrupt" in query:
        raise KeyboardInterrupt
    result = {
        "machineInstanceName": query.get("name", "probe-1"),
        "event": {"type": query.get("event", "seen"), "request": request},
        "authContext": {"sub": query.get("as", "ok")},
    }
    if "create" in query:
        result["initialContext"] = {"public": {"seen": []}, "secret": "given"}
    return result


async def async_handler(request: dict[str, Any]) -> dict[str, Any]:
    return handler(request)


def echo(outcome: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 202, "headers": {"x-probe": "yes"}, "body": outcome}


async def async_echo(outcome: dict[str, Any]) -> dict[str, Any]:
    return echo(outcome)


def broken(outcome: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("mapper bug")


def text(outcome: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "body": "state is " + str(outcome["state"])}


http_api = {
    "echo": {"handler": handler, "response_mapper": echo},
    "async": {"handler": async_handler, "response_mapper": async_echo},
    "broken": {"handler": handler, "response_mapper": broken},
    "text": {"handler": handler, "response_mapper": text},
}
"""


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("WEBHOOK_COUNTER_SECRET", SECRET)  # inherited by the server process
    # Trusted: the webhook counter reads the server's environment, which sandboxed machine
    # code never sees (tests/server/test_sandbox.py runs HTTP-API handlers sandboxed).
    srv = Server(tmp_path, options=("--trusted",))
    try:
        admin = _admin(srv)
        for slug, source in [
            ("webhook-counter", (ROOT / "examples" / "webhook_counter.py").read_text()),
            ("probe", PROBE),
        ]:
            r = httpx.post(f"{srv.url}/machines", json={"slug": slug}, headers=admin)
            assert r.status_code == 201, r.text
            r = httpx.post(f"{srv.url}/machines/{slug}/v", json={"code": source}, headers=admin)
            assert r.status_code == 200, r.text
        yield srv
    finally:
        srv.stop()


def _admin(server: Server) -> dict[str, str]:
    return server.headers({"sub": "admin"})


def _api(server: Server, machine: str, slug: str, org: str | None = None) -> str:
    return f"{server.url}/http-api/{org or server.creds['orgId']}/machines/{machine}/{slug}"


def _instance(server: Server, machine: str, name: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/machines/{machine}/i/{name}/admin", headers=_admin(server), timeout=10
    )


def test_webhook_counter_creates_on_first_use_and_returns_the_output(server: Server) -> None:
    url = _api(server, "webhook-counter", "increment")
    auth = {"x-webhook-secret": SECRET}
    r = httpx.post(url + "?counter=c1", headers=auth, timeout=10)  # no JWT, no body
    assert (r.status_code, r.json()) == (200, {"count": 1})
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"] == "application/json"
    got = _instance(server, "webhook-counter", "c1").json()
    assert (got["state"], got["context"]) == ("counting", {"public": {"count": 1}})

    r = httpx.post(url + "?counter=c1", json={"by": 4}, headers=auth, timeout=10)
    assert (r.status_code, r.json()) == (200, {"count": 5})
    r = httpx.post(url + "?counter=c1", json={"by": 5}, headers=auth, timeout=10)
    assert (r.status_code, r.json()) == (200, {"count": 10, "result": {"total": 10}})
    assert _instance(server, "webhook-counter", "c1").json()["done"] is True
    # The default instance name; the other counter is untouched.
    r = httpx.post(url, json={"by": 2}, headers=auth, timeout=10)
    assert (r.status_code, r.json()) == (200, {"count": 2})
    assert _instance(server, "webhook-counter", "c1").json()["context"]["public"]["count"] == 10


def test_webhook_counter_rejects_a_wrong_secret_before_creating(server: Server) -> None:
    url = _api(server, "webhook-counter", "increment") + "?counter=c2"
    for headers in ({}, {"x-webhook-secret": "guess"}):
        r = httpx.post(url, json={"by": 1}, headers=headers, timeout=10)
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "http-api-handler-failed"
        assert "x-webhook-secret" in r.json()["error"]
    assert _instance(server, "webhook-counter", "c2").status_code == 404


def test_existing_instance_gets_the_event_and_the_request_reaches_the_handler(
    server: Server,
) -> None:
    admin = _admin(server)
    created = httpx.post(
        f"{server.url}/machines/probe", json={"slug": "p1"}, headers=server.headers({"sub": "ok"})
    )
    assert created.status_code == 200, created.text
    r = httpx.post(
        _api(server, "probe", "echo") + "?name=p1&x=1&x=2",
        json={"hello": ["world"]},
        headers={"X-Custom": "Value", **admin},
        timeout=10,
    )
    assert r.status_code == 202, r.text
    assert r.headers["x-probe"] == "yes"
    body = r.json()
    assert body["state"] == "open" and body["result"] is None
    assert body["context"]["secret"] == "kept"  # the full context, not only public
    (seen,) = body["context"]["public"]["seen"]
    assert seen["body"] == {"hello": ["world"]}
    assert seen["method"] == "POST"
    assert seen["query"] == {"name": "p1", "x": "2"}
    assert seen["headers"]["x-custom"] == "Value"
    assert seen["headers"]["content-type"] == "application/json"
    assert "X-Custom" not in seen["headers"]


def test_without_initial_context_a_missing_instance_is_404(server: Server) -> None:
    r = httpx.post(_api(server, "probe", "echo") + "?name=nobody", timeout=10)
    assert (r.status_code, r.json()["code"]) == (404, "instance-not-found")
    assert _instance(server, "probe", "nobody").status_code == 404


def test_auto_create_uses_the_initial_context_then_sends(server: Server) -> None:
    r = httpx.put(_api(server, "probe", "async") + "?name=new&create=1", timeout=10)
    assert r.status_code == 202, r.text
    assert r.json()["context"]["secret"] == "given"
    assert [s["method"] for s in r.json()["context"]["public"]["seen"]] == ["PUT"]
    events = httpx.get(
        f"{server.url}/machines/probe/i/new/events", headers=_admin(server), timeout=10
    ).json()["transitions"]
    assert len(events) == 2  # the creation, then the event


def test_handler_raising_creates_and_sends_nothing(server: Server) -> None:
    r = httpx.post(_api(server, "probe", "echo") + "?name=h1&create=1&fail=nope", timeout=10)
    assert (r.status_code, r.json()["code"]) == (400, "http-api-handler-failed")
    assert "the handler refused: nope" in r.json()["error"]
    assert _instance(server, "probe", "h1").status_code == 404
    r = httpx.post(_api(server, "probe", "echo") + "?name=h1&create=1&teapot=1", timeout=10)
    assert (r.status_code, r.json()["code"]) == (418, "http-api-handler-failed")
    r = httpx.post(_api(server, "probe", "echo") + "?bad=1", timeout=10)
    assert (r.status_code, r.json()["code"]) == (422, "http-api-handler-invalid")
    for raised in ("exit", "interrupt"):  # the handler's own: the server goes on
        r = httpx.post(_api(server, "probe", "echo") + f"?name=h1&create=1&{raised}=1", timeout=10)
        assert (r.status_code, r.json()["code"]) == (400, "http-api-handler-failed"), r.text
    assert _instance(server, "probe", "h1").status_code == 404


def test_a_broken_http_api_is_refused_at_upload(server: Server) -> None:
    camel = PROBE.replace(
        '"text": {"handler": handler, "response_mapper": text},',
        '"camel": {"handler": handler, "responseMapper": echo},',
    )
    assert camel != PROBE
    r = httpx.post(f"{server.url}/machines/probe/v", json={"code": camel}, headers=_admin(server))
    assert (r.status_code, r.json()["code"]) == (400, "invalid-export")
    assert "response_mapper" in r.json()["error"]


def test_response_mapper_raising_gives_200_ok_after_the_event(server: Server) -> None:
    r = httpx.post(_api(server, "probe", "broken") + "?name=b1&create=1", timeout=10)
    assert (r.status_code, r.json()) == (200, {"ok": True})
    got = _instance(server, "probe", "b1").json()
    assert len(got["context"]["public"]["seen"]) == 1  # the event was still sent


def test_the_authorizer_sees_the_handlers_auth_context(server: Server) -> None:
    url = _api(server, "probe", "echo")
    r = httpx.post(url + "?name=a1&create=1&as=mallory", timeout=10)
    assert (r.status_code, r.json()["code"]) == (403, "rejected-by-machine-authorizer")
    assert _instance(server, "probe", "a1").status_code == 404  # initialization refused
    assert httpx.post(url + "?name=a1&create=1", timeout=10).status_code == 202
    r = httpx.post(url + "?name=a1&as=mallory", timeout=10)
    assert (r.status_code, r.json()["code"]) == (403, "rejected-by-machine-authorizer")
    assert len(_instance(server, "probe", "a1").json()["context"]["public"]["seen"]) == 1


def test_unknown_org_machine_or_slug_is_404(server: Server) -> None:
    for url in (
        _api(server, "probe", "nope"),
        _api(server, "ghost", "echo"),
        _api(server, "probe", "echo", org="org_unknown"),
        _api(server, "toggler", "echo"),  # a machine without http_api
    ):
        r = httpx.post(url + "?create=1", timeout=10)
        assert r.status_code == 404, (url, r.text)
    assert _instance(server, "probe", "probe-1").status_code == 404


def test_non_json_bodies_reach_the_handler_as_text(server: Server) -> None:
    url = _api(server, "probe", "echo") + "?name=t1&create=1"
    r = httpx.post(url, content=b"a=1&b=2", timeout=10)
    assert r.status_code == 202, r.text
    r = httpx.post(url, content="{not json", headers={"content-type": "application/json"})
    assert r.status_code == 202, r.text
    r = httpx.post(url, content=b"\xff\xfe", timeout=10)
    assert r.status_code == 202, r.text
    seen = r.json()["context"]["public"]["seen"]
    assert [s["body"] for s in seen] == ["a=1&b=2", "{not json", "\ufffd\ufffd"]


def test_get_with_query_and_a_text_response(server: Server) -> None:
    r = httpx.get(_api(server, "probe", "text") + "?name=g1&create=1&q=hello%20world")
    assert (r.status_code, r.text) == (200, "state is open")
    assert r.headers["content-type"].startswith("text/plain")
    (seen,) = _instance(server, "probe", "g1").json()["context"]["public"]["seen"]
    assert (seen["method"], seen["body"]) == ("GET", None)
    assert seen["query"]["q"] == "hello world"


def test_a_final_state_gives_the_output_as_result(server: Server) -> None:
    url = _api(server, "probe", "async")
    assert httpx.post(url + "?name=f1&create=1", timeout=10).status_code == 202
    r = httpx.post(url + "?name=f1&event=close", timeout=10)
    assert r.status_code == 202, r.text
    assert (r.json()["state"], r.json()["result"]) == ("closed", {"seen": 1})


def test_bodies_are_size_limited(server: Server) -> None:
    r = httpx.post(
        _api(server, "probe", "echo") + "?name=big&create=1", content=b"x" * 1_000_001, timeout=10
    )
    assert (r.status_code, r.json()["code"]) == (413, "payload-too-large")
    assert _instance(server, "probe", "big").status_code == 404
