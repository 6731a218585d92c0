"""Servers of the `net` group for asyncio and uvloop, on 127.0.0.1 only.

    python3 net_servers.py --loop asyncio|uvloop --kind echo-streams|echo-protocol|http

Binds 127.0.0.1 on a free port, prints `LISTENING <port>` and serves until
killed. The echo servers follow vmbench (MagicStack's echo benchmark
servers); the http server is the same minimal HTTP/1.1 keep-alive responder
as tulip's examples/http_server.rs and the tokio/floor ones in the bench crate.
"""

import argparse
import asyncio
import socket
import sys

from common import new_loop

BODY = b"Hello, World!"
# Byte for byte what tulip's examples/http_server sends for /plaintext.
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: tulip\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n" + BODY
)


async def echo_streams(reader, writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = await reader.read(102400)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.transport = None


async def http_streams(reader, writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            # Request line and headers; wrk sends no body on GET.
            head = await reader.readuntil(b"\r\n\r\n")
            keep_alive = b"connection: close" not in head.lower()
            writer.write(RESPONSE)
            await writer.drain()
            if not keep_alive:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    writer.close()


async def main(kind):
    loop = asyncio.get_running_loop()
    if kind == "echo-streams":
        server = await asyncio.start_server(echo_streams, "127.0.0.1", 0)
    elif kind == "echo-protocol":
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0)
    elif kind == "http":
        server = await asyncio.start_server(http_streams, "127.0.0.1", 0, backlog=1024)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", required=True, choices=["asyncio", "uvloop"])
    ap.add_argument("--kind", required=True)
    a = ap.parse_args()
    loop = new_loop(a.loop)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main(a.kind))
    except KeyboardInterrupt:
        sys.exit(0)
