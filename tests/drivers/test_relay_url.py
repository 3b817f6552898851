"""TcpRelay in front of a server known by URL: the relay targets the URL's host and port and
hands back the same URL pointed at itself."""

from __future__ import annotations

import asyncio

import pytest

from modulecontrol.testing import TcpRelay


async def test_relay_for_url_targets_its_port_and_relays_the_bytes() -> None:
    got: list[bytes] = []

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got.append(await r.readexactly(4))
        w.write(b"pong")
        await w.drain()
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"opc.tcp://127.0.0.1:{port}/modulecontrol/R1"
    async with server, TcpRelay.for_url(url) as relay:
        assert (relay.target_host, relay.target_port) == ("127.0.0.1", port)
        relayed = relay.relayed(url)
        assert relayed == f"opc.tcp://127.0.0.1:{relay.port}/modulecontrol/R1"
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"pong"
        writer.close()
    assert got == [b"ping"]


def test_a_url_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="names no host:port"):
        TcpRelay.for_url("opc.tcp://plant-host/pea")
