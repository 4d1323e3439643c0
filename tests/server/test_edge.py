"""The edge against a real `backstate serve`: whatever a client sends (bodies nested too
deep, strings that are not Unicode, ...) gets a 4xx with a stable code and changes
nothing, and what the server says names things as the caller does."""

from __future__ import annotations

from typing import Any

import httpx

from .test_e2e import TOGGLER, Server


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def test_already_exists_names_the_machine_as_the_caller_does(server: Server) -> None:
    me = server.headers({"sid": "dup"})
    url = f"{server.url}/machines/toggler"
    assert httpx.post(url, json={"slug": "dup"}, headers=me).status_code == 200
    again = httpx.post(url, json={"slug": "dup"}, headers=me)
    assert error(again) == (409, "invalid-state")
    message = again.json()["error"]
    assert "toggler" in message and server.creds["orgId"] not in message, message


def deep(levels: int, leaf: str = "1") -> str:
    return '{"a":' * levels + leaf + "}" * levels


def test_deep_json_is_refused_at_the_edge_and_changes_nothing(server: Server) -> None:
    me = server.headers({"sid": "deep"})
    base = f"{server.url}/machines/toggler"
    json_headers = {**me, "content-type": "application/json"}
    assert httpx.post(base, json={"slug": "deep"}, headers=me).status_code == 200
    events = f"{base}/i/deep/events"
    for levels in (65, 2_000, 100_000):
        for url, body in (
            (events, '{"event": {"type": "toggle", "data": ' + deep(levels) + "}}"),
            (base, '{"slug": "deep2", "context": ' + deep(levels) + "}"),
            (base, deep(levels)),
        ):
            refused = httpx.post(url, content=body, headers=json_headers)
            assert error(refused) == (400, "too-deep"), (levels, url, refused.text)
    # 64 levels are fine.
    fine = '{"event": {"type": "toggle", "data": ' + deep(62) + "}}"
    assert httpx.post(events, content=fine, headers=json_headers).status_code == 200
    act = {**me, "x-statebacked-act": deep(2_000, '"x"')}
    assert httpx.get(f"{base}/i/deep", headers=act).status_code in (400, 403)
    state = httpx.get(f"{base}/i/deep", headers=me).json()
    assert (state["state"], state["publicContext"]) == ("off", {"toggleCount": 1})
    assert httpx.get(f"{base}/i/deep2", headers=me).status_code == 404


def test_strings_that_are_not_unicode_are_refused_and_reads_keep_working(
    server: Server,
) -> None:
    me = server.headers({"sid": "lone"})
    admin = server.headers({})
    base = f"{server.url}/machines/toggler"
    json_headers = {**me, "content-type": "application/json"}
    assert httpx.post(base, json={"slug": "lone"}, headers=me).status_code == 200
    events = f"{base}/i/lone/events"
    bodies: list[Any] = [
        r'{"event": {"type": "toggle", "data": "\ud800"}}',
        r'{"event": {"type": "toggle", "\udc00": 1}}',
        r'{"event": {"type": "toggle", "data": ["ok", {"x": "a\udfffb"}]}}',
        r'{"event": "\ud83d"}',
        b'{"event": {"type": "toggle", "data": "' + b"\xed\xa0\x80" + b'"}}',
    ]
    for body in bodies:
        refused = httpx.post(events, content=body, headers=json_headers)
        assert error(refused) == (400, "invalid-unicode"), (body, refused.text)
    created = httpx.post(
        base, content=r'{"slug": "lone2", "context": {"\ud800": 1}}', headers=json_headers
    )
    assert error(created) == (400, "invalid-unicode")
    # A real pair is text like any other.
    paired = r'{"event": {"type": "toggle", "data": "\ud83d\ude00"}}'
    assert httpx.post(events, content=paired, headers=json_headers).status_code == 200
    for path, headers in (("/admin", admin), ("/events", admin), ("", me)):
        assert httpx.get(f"{base}/i/lone{path}", headers=headers).status_code == 200, path
    transitions = httpx.get(f"{base}/i/lone/events", headers=admin).json()["transitions"]
    assert [t["event"].get("data") for t in transitions[1:]] == ["😀"]


WRONG_TYPES: list[Any] = [[["x"], []], {"a": 1}, 7, True, 1.5]


def test_fields_of_the_wrong_type_get_400_and_change_nothing(server: Server) -> None:
    me = server.headers({"sid": "types"})
    admin = server.headers({})
    base = f"{server.url}/machines/toggler"
    assert httpx.post(base, json={"slug": "types"}, headers=me).status_code == 200
    cases: list[tuple[str, str, dict[str, str], str, dict[str, Any]]] = []
    for wrong in WRONG_TYPES:
        cases += [
            ("POST", base, me, "machineVersionId", {"slug": "types2"}),
            ("POST", base, me, "slug", {}),
            ("POST", base, me, "context", {"slug": "types3"}),
            ("POST", f"{base}/i/types/events", me, "event", {}),
            ("PUT", f"{base}/i/types/v", admin, "targetMachineVersionId", {}),
            ("POST", f"{server.url}/machines", admin, "slug", {}),
            ("POST", f"{server.url}/machines", admin, "indexes", {"slug": "m-types"}),
        ]
        for method, url, headers, field, rest in cases[-7:]:
            if field == "context" and isinstance(wrong, dict):
                continue  # an object is the right type for a context
            response = httpx.request(method, url, json={**rest, field: wrong}, headers=headers)
            assert response.status_code == 400, (method, url, field, wrong, response.text)
            assert response.json()["code"] in {"invalid-parameter", "invalid-event"}, response.text
    # Optional fields of the wrong type are refused too, not read as absent.
    code = TOGGLER.read_text()
    versions = httpx.get(f"{base}/v", headers=admin).json()["versions"]
    for method, url, body in [
        ("POST", f"{base}/v", {"code": code, "clientInfo": ["c"]}),
        ("POST", f"{base}/v", {"code": code, "makeCurrent": "yes"}),
        ("POST", f"{base}/v", {"code": code, "indexSelectors": ["x"]}),
        (
            "PUT",
            f"{base}/i/types/v",
            {"targetMachineVersionId": versions[0]["id"], "upgradeNow": "yes"},
        ),
    ]:
        response = httpx.request(method, url, json=body, headers=admin)
        assert error(response) == (400, "invalid-parameter"), (url, body, response.text)
    assert len(httpx.get(f"{base}/v", headers=admin).json()["versions"]) == len(versions)
    for event in ("", {"type": ""}):
        response = httpx.post(f"{base}/i/types/events", json={"event": event}, headers=me)
        assert error(response) == (400, "invalid-event"), response.text
    state = httpx.get(f"{base}/i/types", headers=me).json()
    assert (state["state"], state["publicContext"]) == ("on", {"toggleCount": 0}), state
    for name in ("types2", "types3"):
        assert httpx.get(f"{base}/i/{name}", headers=me).status_code == 404
    assert httpx.get(f"{server.url}/machines/m-types", headers=admin).status_code == 404
