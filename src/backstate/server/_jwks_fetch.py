"""Fetching identity providers' JWKS documents without letting a URL reach inside.

``POST /tokens`` needs no credentials and makes the server GET the IdP's ``jwksUrl``, so
that URL must not become a way into the server's own network: by default every address
its host resolves to must be a public one (not loopback, private, link-local such as
169.254.169.254, shared, multicast or reserved, nor an IPv6 form embedding one), and the
connection goes to the very address that was checked, with the name kept for the Host
header, TLS SNI and the certificate check. Resolving again when connecting would let a
DNS server answer differently the second time (rebinding). Redirects are not followed
and proxies from the environment are not used: both would go somewhere unchecked.
``serve --allow-private-jwks`` lifts the address rule, for IdPs on the operator's own
network.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from backstate._addresses import Address, public

JWKS_TIMEOUT_S = 5.0  # for the whole fetch: a server trickling its answer is cut off too
JWKS_MAX_BYTES = 1_000_000

Resolve = Callable[..., Sequence[tuple[Any, ...]]]  # socket.getaddrinfo's shape


class JwksFetch:
    """``fetch(url)``: the JWKS document at ``url`` as a dict, raising on any failure
    (``JwksCache`` turns every failure into one generic error)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolve: Resolve = socket.getaddrinfo,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.allow_private = allow_private
        self.resolve = resolve
        self.verify = verify

    def __call__(self, url: str) -> Mapping[str, Any]:
        deadline = time.monotonic() + JWKS_TIMEOUT_S
        target = httpx.URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise ValueError("not an http(s) URL")
        address = self.address(
            target.host, target.port or (443 if target.scheme == "https" else 80)
        )
        with (
            httpx.Client(
                verify=self.verify, trust_env=False, follow_redirects=False, timeout=JWKS_TIMEOUT_S
            ) as client,
            client.stream(
                "GET",
                target.copy_with(host=str(address)),
                headers={"host": target.netloc.decode("ascii"), "accept": "application/json"},
                extensions={"sni_hostname": target.host},
            ) as response,
        ):
            if response.status_code != 200:
                raise ValueError(f"answered {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise ValueError(f"the document is larger than {JWKS_MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the document took more than {JWKS_TIMEOUT_S:g} s")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the document is not a JSON object")
        return document

    def address(self, host: str, port: int) -> Address:
        """The address to connect to: ``host``'s first, once every one it resolves to
        passed the rule (a name with one inside address is refused, whichever comes
        first)."""
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            found = self.resolve(host, port, type=socket.SOCK_STREAM)
            addresses = [ipaddress.ip_address(info[4][0]) for info in found]
        if not addresses:
            raise OSError(f"{host} has no address")
        if not self.allow_private:
            refused = [a for a in addresses if not public(a)]
            if refused:
                raise PermissionError(f"{host} resolves to {refused[0]}, which is not public")
        return addresses[0]
