"""Connection-level behaviour the emulator needs beyond ASGI: dropping a connection, cutting a body.

ASGI gives an application no way to close a connection without answering: uvicorn turns an
exception or an empty return into a 500. The emulator therefore serves with its own HTTP
protocol class (uvicorn's ``http=`` setting), a subclass of uvicorn's automatic choice that puts
each connection's transport in the request scope. Closing that transport is what a client sees as
a dropped connection: httpx raises ``RemoteProtocolError`` ("Server disconnected without sending
a response", or "peer closed connection without sending complete message body" once headers
went out), never an HTTP status.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from uvicorn.protocols.http.auto import AutoHTTPProtocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncGenerator, Callable

    from starlette.types import ASGIApp, Receive, Scope, Send

TRANSPORT_KEY = "segmind_emulator.transport"


def http_protocol_class() -> type[asyncio.Protocol]:
    """Return uvicorn's HTTP protocol class extended to expose each connection's transport."""
    base: Any = AutoHTTPProtocol

    def connection_made(self: Any, transport: asyncio.Transport) -> None:
        base.connection_made(self, transport)
        inner: ASGIApp = self.app

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            scope[TRANSPORT_KEY] = transport
            await inner(scope, receive, send)

        # uvicorn reads self.app for every request on this connection.
        self.app = app

    return type("EmulatorHTTPProtocol", (base,), {"connection_made": connection_made})


def _transport(scope: Scope) -> asyncio.Transport | None:
    """Return the connection's transport when served by the emulator's protocol class."""
    # uvloop's transports implement asyncio's interface without subclassing it: no isinstance check.
    transport: asyncio.Transport | None = scope.get(TRANSPORT_KEY)
    return transport


async def close_connection(scope: Scope, receive: Receive) -> None:
    """Close the client's connection (after flushing what was sent) and wait until uvicorn sees it closed.

    :param scope: the request scope, carrying the transport.
    :param receive: the request's ASGI receive callable.
    """
    transport = _transport(scope)
    if transport is None:
        raise RuntimeError("dropping a connection needs the emulator's server (Emulator or its command line)")
    transport.close()
    # Returning before uvicorn notices would make it log (or answer) an unfinished response.
    while (await receive())["type"] != "http.disconnect":
        pass


class DropConnection(Response):
    """Close the connection without any answer; read the request body before returning it."""

    def __init__(self) -> None:
        super().__init__(content=b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Close the connection instead of sending a response."""
        await close_connection(scope, receive)


class SizedStream(Response):
    """Stream a body of known size with its Content-Length; optionally cut it short.

    :param chunks: factory of the body's chunks (called only for GET).
    :param size: total bytes ``chunks`` yields, sent as Content-Length.
    :param media_type: the Content-Type.
    :param head: send the headers only.
    :param cut_after: close the connection after this many body bytes (at most ``size - 1``).
    """

    def __init__(
        self,
        chunks: Callable[[], AsyncGenerator[bytes, None]],
        size: int,
        media_type: str,
        head: bool = False,
        cut_after: int | None = None,
    ) -> None:
        super().__init__(content=b"", media_type=media_type)
        self.headers["content-length"] = str(size)
        self._chunks = chunks
        self._size = size
        self._head = head
        self._cut_after = None if cut_after is None else max(0, min(cut_after, size - 1))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers, then the body or the part of it before the cut."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self._head or self._size == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        budget = self._size if self._cut_after is None else self._cut_after
        transport = _transport(scope)
        sent = 0
        async with aclosing(self._chunks()) as stream:
            async for chunk in stream:
                piece = chunk[: budget - sent]
                if piece:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                    sent += len(piece)
                # uvicorn silently drops writes to a closed connection: stop producing for nobody.
                if sent >= budget or (transport is not None and transport.is_closing()):
                    break
        if self._cut_after is not None:
            await close_connection(scope, receive)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
