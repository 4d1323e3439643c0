"""The request cycle's transport of ``BoundedHttpToolsProtocol``: a response's head goes
out with its body in one write, over a real socket; a 100 Continue and a chunked
response's head go out at once; a head still held when the cycle closes the connection
goes out first."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

from backstate.server._protocol import _OneWrite


class Counted(asyncio.Protocol):
    """The server side of a real loopback connection; ``writes`` counts the writes its
    transport is asked for (each a ``send`` system call when the socket takes it)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.writes: list[bytes] = []
        write = transport.write

        def counted(data: bytes) -> None:
            self.writes.append(bytes(data))
            write(data)

        transport.write = counted


async def _pair() -> tuple[Counted, socket.socket, asyncio.base_events.Server]:
    made: asyncio.Future[Counted] = asyncio.get_running_loop().create_future()

    def factory() -> Counted:
        protocol = Counted()
        asyncio.get_running_loop().call_soon(made.set_result, protocol)
        return protocol

    listener = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    client.setblocking(False)
    return await made, client, listener


async def _read(client: socket.socket, size: int) -> bytes:
    data = b""
    loop = asyncio.get_running_loop()
    while len(data) < size:
        chunk = await loop.sock_recv(client, 65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_head_goes_out_with_its_body_in_one_write() -> None:
    async def body() -> None:
        server, client, listener = await _pair()
        out = _OneWrite(
            server.transport, SimpleNamespace(response_started=True, chunked_encoding=False)
        )
        head, text = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"{}"
        out.write(head)
        assert server.writes == []  # held for the body
        out.write(text)
        assert server.writes == [head + text]
        out.write(b"")  # a later piece goes as it comes
        assert await _read(client, len(head + text)) == head + text
        client.close()
        listener.close()

    asyncio.run(body())


def test_continue_and_chunked_heads_go_at_once_and_close_flushes() -> None:
    async def body() -> None:
        server, client, listener = await _pair()
        cont = b"HTTP/1.1 100 Continue\r\n\r\n"
        chunked = SimpleNamespace(response_started=False, chunked_encoding=None)
        out = _OneWrite(server.transport, chunked)
        out.write(cont)  # written by the cycle before its response starts
        assert server.writes == [cont]
        chunked.response_started, chunked.chunked_encoding = True, True
        head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        out.write(head)
        assert server.writes == [cont, head]
        held = _OneWrite(
            server.transport, SimpleNamespace(response_started=True, chunked_encoding=False)
        )
        other = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\n"
        held.write(other)
        assert not held.is_closing()
        held.close()  # the app failed after its head: the head still goes, then the end
        assert server.writes == [cont, head, other]
        assert await _read(client, 10**6) == cont + head + other
        client.close()
        listener.close()

    asyncio.run(body())
