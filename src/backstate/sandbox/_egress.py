"""The one way out of a sandbox: an HTTP proxy the server runs for each org's effects
worker, admitting only what the operator's allow-list names.

Workers have no network of their own. An org's effects worker (custom actions and
services; transition code never) finds this proxy at ``/run/egress.sock`` and, inside
its jail, at ``http://127.0.0.1:3128`` (``HTTP_PROXY``/``HTTPS_PROXY`` point there, so
httpx, requests, urllib and the OpenAI client use it). The proxy takes ``CONNECT
host:port`` (HTTPS) and absolute-form requests (plain HTTP), and refuses, with 403,
anything no rule allows. By default there is no rule: no egress at all.

A rule is ``[ORG=]HOST[:PORT]`` (``serve --egress-allow``): ``HOST`` a name (``*.``
admits its subdomains) or an IP address, ``PORT`` any when absent, ``ORG`` all orgs
when absent. A name is resolved here, and every address it resolves to must be public
(never loopback, private, link-local or metadata addresses, whatever a DNS server
answers); the connection goes to the address that was checked. An IP address written
in a rule is the operator's explicit choice, private or not (a model server on the
host's loopback for development, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from backstate._addresses import Address, public

logger = logging.getLogger("backstate.sandbox.egress")

HEAD_LIMIT = 16 * 1024
HEAD_SECONDS = 10.0
CONNECT_SECONDS = 10.0
IDLE_SECONDS = 300.0  # a tunnel with no traffic either way for this long is closed


class RuleError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    org: str | None
    host: str  # lower case; "*.example.com" admits example.com's subdomains
    port: int | None

    @classmethod
    def parse(cls, text: str) -> Rule:
        org, _, target = text.rpartition("=")
        host, port = _split(target)
        if not host or any(c in host for c in "/@ "):
            raise RuleError(f"not a host: {target!r}")
        return cls(org or None, host.lower(), port)

    @property
    def address(self) -> Address | None:
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(self.host)
        return None

    def admits(self, org: str, host: str, port: int) -> bool:
        if self.org is not None and self.org != org:
            return False
        if self.port is not None and self.port != port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host


def _split(target: str) -> tuple[str, int | None]:
    if target.startswith("["):  # [v6]:port
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif target.count(":") == 1:
        host, _, port = target.partition(":")
    else:
        host, port = target, ""
    if not port:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RuleError(f"not a port: {port!r}")
    return host, int(port)


class Egress:
    """The proxy for every org, each on a socket of its own (so an org is known by the
    socket it came through, not by anything it says)."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._servers: dict[str, asyncio.AbstractServer] = {}

    async def open(self, org: str, path: Path) -> None:
        if org in self._servers:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(org, reader, writer)

        self._servers[org] = await asyncio.start_unix_server(serve, path=str(path))
        path.chmod(0o666)

    async def close(self) -> None:
        servers, self._servers = self._servers, {}
        for server in servers.values():
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _serve(
        self, org: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_SECONDS)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        if len(head) > HEAD_LIMIT:
            await _refuse(writer, 431, "the request head is too large")
            return
        line, _, rest = head.partition(b"\r\n")
        parts = line.decode("latin-1").split(" ")
        if len(parts) != 3:
            await _refuse(writer, 400, "not an HTTP proxy request")
            return
        method, target, version = parts
        try:
            if method == "CONNECT":
                host, port = _split(target)
                forward = b""
            else:
                url = urlsplit(target)
                if url.scheme != "http" or not url.hostname:
                    raise RuleError("a proxied request needs an absolute http:// URL")
                host, port = url.hostname, url.port or 80
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                forward = f"{method} {path} {version}\r\n".encode() + rest
            if port is None:
                raise RuleError("CONNECT needs host:port")
        except (RuleError, ValueError) as exc:
            await _refuse(writer, 400, str(exc))
            return
        address = await self._checked(org, host.lower(), port)
        if address is None:
            logger.info("egress refused: %s -> %s:%d", org, host, port)
            await _refuse(writer, 403, f"egress to {host}:{port} is not allowed")
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(str(address), port), CONNECT_SECONDS
            )
        except (OSError, TimeoutError):
            await _refuse(writer, 502, f"{host}:{port} cannot be reached")
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            upstream_writer.write(forward)
        await _relay(reader, writer, upstream_reader, upstream_writer)

    async def _checked(self, org: str, host: str, port: int) -> Address | None:
        """The address to connect to, if a rule admits it (see the module docstring)."""
        rules = [r for r in self.rules if r.admits(org, host, port)]
        if not rules:
            return None
        literal = rules[0].address
        if literal is not None:
            return literal
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            return None
        addresses = [ipaddress.ip_address(info[4][0]) for info in found]
        if not addresses or not all(public(a) for a in addresses):
            return None
        return addresses[0]


async def _refuse(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = reason.encode()
    writer.write(
        f"HTTP/1.1 {status} Refused\r\ncontent-type: text/plain\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await asyncio.wait_for(source.read(65536), IDLE_SECONDS)
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.close()

    await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
