"""JwksFetch against real HTTP(S) servers on 127.0.0.1: which addresses it refuses, that
it connects to the address it checked (DNS rebinding cannot move it), and that over TLS
the certificate is still checked against the URL's name."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backstate.server._jwks_fetch import JwksFetch, public

DOCUMENT = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]}


class Idp:
    """An HTTP(S) server on 127.0.0.1 serving ``DOCUMENT``, recording Host headers."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.hosts: list[str | None] = []
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                idp.hosts.append(self.headers.get("host"))
                body = json.dumps(DOCUMENT).encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def idp() -> Iterator[Idp]:
    served = Idp()
    yield served
    served.close()


class Resolver:
    """getaddrinfo's shape, answering ``answers`` in turn (the last one from then on)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, host: str, port: int, **kw: Any) -> list[tuple[Any, ...]]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answer]


def test_the_address_rule() -> None:
    refused = [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.1.1",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::a9fe:a9fe",
    ]
    for text in refused:
        assert not public(ipaddress.ip_address(text)), text
    for text in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert public(ipaddress.ip_address(text)), text


def test_private_addresses_are_refused_before_connecting(idp: Idp) -> None:
    url = f"http://idp.test:{idp.port}/jwks"
    for answer in (["127.0.0.1"], ["8.8.8.8", "127.0.0.1"]):
        with pytest.raises(PermissionError):
            JwksFetch(resolve=Resolver(answer))(url)
    with pytest.raises(PermissionError):
        JwksFetch()(f"http://127.0.0.1:{idp.port}/jwks")
    assert idp.hosts == []
    allowed = JwksFetch(allow_private=True, resolve=Resolver(["127.0.0.1"]))
    assert allowed(url) == DOCUMENT and idp.hosts == [f"idp.test:{idp.port}"]


def test_the_connection_goes_to_the_checked_address(idp: Idp) -> None:
    # A rebinding DNS server answers one address for the check and another after it.
    # The name is resolved once and the connection made to that answer: were it resolved
    # again to connect, it would go to 192.0.2.1 (and fail) instead of reaching the IdP.
    rebinding = Resolver(["127.0.0.1"], ["192.0.2.1"])
    fetch = JwksFetch(allow_private=True, resolve=rebinding)
    assert fetch(f"http://idp.test:{idp.port}/jwks") == DOCUMENT
    assert rebinding.calls == 1 and idp.hosts == [f"idp.test:{idp.port}"]


def _certificate(tmp: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for ``name``, and a client
    context trusting only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


def test_tls_checks_the_certificate_against_the_urls_name(tmp_path: Path) -> None:
    server, client = _certificate(tmp_path, "idp.test")
    idp = Idp(server)
    try:
        fetch = JwksFetch(allow_private=True, resolve=Resolver(["127.0.0.1"]), verify=client)
        assert fetch(f"https://idp.test:{idp.port}/jwks") == DOCUMENT
        # The same server under a name its certificate does not carry is refused.
        with pytest.raises(Exception, match=r"(?i)certificate|hostname"):
            fetch(f"https://other.test:{idp.port}/jwks")
        assert idp.hosts == [f"idp.test:{idp.port}"]
    finally:
        idp.close()


def test_redirects_are_not_followed(idp: Idp) -> None:
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("location", f"http://127.0.0.1:{idp.port}/jwks")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        fetch = JwksFetch(allow_private=True)
        with pytest.raises(ValueError, match="302"):
            fetch(f"http://127.0.0.1:{httpd.server_address[1]}/")
        assert idp.hosts == []
    finally:
        httpd.shutdown()
        httpd.server_close()
