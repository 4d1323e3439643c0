"""Egress from the sandbox: a service reaches the network only through the server's
proxy, and only what `serve --egress-allow` names (nothing by default); a name that
resolves to a private address is refused even when allowed; transition code has no
network at all. Against a real `backstate serve` and a real HTTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.server.test_e2e import Server

FETCHER = Path(__file__).with_name("machines") / "fetcher.py"
REFUSED = "403 egress to {host}:{port} is not allowed"  # the proxy's answer


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def peer() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _fetch(server: Server, name: str, event: dict[str, str]) -> dict[str, str]:
    headers = server.headers({"sub": "someone"})
    url = f"{server.url}/machines/fetcher"
    r = httpx.post(url, json={"slug": name}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{url}/i/{name}/events", json={"event": event}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    public: dict[str, str] = r.json()["publicContext"]
    return public


@pytest.mark.parametrize(
    ("rules", "host", "expected"),
    [
        ((), "127.0.0.1", REFUSED),  # no rule: no egress
        (("127.0.0.1:{port}",), "127.0.0.1", "200 hello from the host"),  # an explicit IP
        (("localhost:{port}",), "localhost", REFUSED),  # a name, resolving to loopback
        (("127.0.0.1:1",), "127.0.0.1", REFUSED),  # another port
        (("other-org=127.0.0.1:{port}",), "127.0.0.1", REFUSED),  # another org's rule
    ],
    ids=["default", "allowed-ip", "private-name", "wrong-port", "other-org"],
)
def test_services_reach_only_what_the_operator_allows(
    tmp_path: Path, peer: int, rules: tuple[str, ...], host: str, expected: str
) -> None:
    options: list[str] = []
    for rule in rules:
        options += ["--egress-allow", rule.format(port=peer)]
    server = Server(tmp_path, deploy=FETCHER, options=tuple(options))
    try:
        result = _fetch(server, "f", {"type": "fetch", "url": f"http://{host}:{peer}/"})
        assert result["result"] == expected.format(host=host, port=peer)
        # Transition code has no network, whatever the rules say.
        here = _fetch(server, "g", {"type": "fetch_here", "url": f"http://{host}:{peer}/"})
        assert here["transition"].startswith("blocked:"), here
    finally:
        server.stop()
