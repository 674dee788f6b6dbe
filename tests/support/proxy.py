"""A loopback TCP proxy that can refuse connections for a while, as a server that is down does.

``with RefusingProxy(emu.base_url) as proxy:`` relays every byte between its clients and the
target; point a client (or an Airflow connection) at ``proxy.base_url``. ``proxy.refuse_for(60)``
closes the listening socket and cuts every relayed connection, so a connect gets ECONNREFUSED, then
listens again on the same port after 60 seconds (``resume()`` ends it early). The proxy runs an
event loop of its own on a daemon thread, so the test thread, or Airflow components reaching it
over loopback, never wait on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from types import TracebackType
    from typing import Any, TypeVar

    _T = TypeVar("_T")

_CHUNK = 64 * 1024
#: Seconds a call from the test thread waits for the proxy's loop.
_CALL_TIMEOUT = 10.0
#: Seconds a re-listen keeps trying while the port is briefly held by another socket.
_REBIND_TIMEOUT = 5.0


def _bind(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on ``host:port``; SO_REUSEADDR lets it re-bind a port just closed.

    :param host: the address to listen on.
    :param port: the port; 0 picks a free one.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close a relayed socket at once, dropping whatever it has not sent."""
    writer.transport.abort()


class RefusingProxy:
    """A TCP forwarder on a loopback port to ``target_url``'s host and port, that can refuse for a while.

    :param target_url: where to relay, e.g. ``http://127.0.0.1:41234``; its scheme is kept in ``base_url``.
    :param host: the address to listen on.
    :param port: the port to listen on; 0 picks a free one, kept for the proxy's whole life.
    """

    def __init__(self, target_url: str, host: str = "127.0.0.1", port: int = 0) -> None:
        target = urlsplit(target_url)
        if target.hostname is None:
            raise ValueError(f"target_url needs a host, got {target_url!r}")
        self._scheme = target.scheme or "http"
        self._target = (target.hostname, target.port or (443 if self._scheme == "https" else 80))
        self.host = host
        self.port = port
        self.accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._relays: dict[asyncio.Task[Any], list[asyncio.StreamWriter]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timed_resume: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._listening = threading.Event()
        self._error: OSError | None = None

    # -- the test thread's side -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Return ``scheme://HOST:PORT`` of the proxy, the same while it refuses."""
        if self._loop is None:
            raise RuntimeError("the proxy is not running; call start() or use it as a context manager")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self._scheme}://{host}:{self.port}"

    @property
    def refusing(self) -> bool:
        """Return whether connects are refused now."""
        return not self._listening.is_set()

    @property
    def open_connections(self) -> int:
        """Return how many client connections are being relayed now."""
        return len(self._relays)

    def start(self) -> RefusingProxy:
        """Start the loop thread and listen; return once connects are accepted."""
        if self._loop is not None:
            raise RuntimeError("the proxy is already running")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="refusing-proxy", daemon=True)
        self._thread.start()
        try:
            self._call(self._resume_now())
        except BaseException:
            self.close()
            raise
        return self

    def refuse_for(self, seconds: float) -> None:
        """Close the listening socket and cut every relayed connection; listen again after ``seconds``.

        Returns once connects are refused. Called while refusing, it restarts the wait from now.

        :param seconds: how long connects are refused.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be at least 0, got {seconds!r}")
        self._call(self._refuse(seconds))

    def resume(self) -> None:
        """Listen again now, ending a refusal early; a no-op while listening."""
        self._call(self._resume_now())

    def wait_until_listening(self, timeout: float) -> None:
        """Block until connects are accepted again.

        :param timeout: seconds to wait at most.
        :raises OSError: the port could not be listened on again.
        :raises TimeoutError: still refusing after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self._error is not None:
                raise self._error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the proxy on port {self.port} still refuses after {timeout}s")

    def close(self) -> None:
        """Stop listening, cut every relayed connection and end the loop thread; a no-op when stopped."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if thread is not None and thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._shut())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_CALL_TIMEOUT)
        if not loop.is_running():
            loop.close()
        self._loop = self._thread = None
        self._listening.clear()

    def __enter__(self) -> RefusingProxy:
        """Start the proxy."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the proxy."""
        self.close()

    def __repr__(self) -> str:
        """Describe the proxy and its state."""
        if self._loop is None:
            return "<RefusingProxy stopped>"
        state = "refusing" if self.refusing else "listening"
        return f"<RefusingProxy {self.base_url} -> {self._target[0]}:{self._target[1]} {state}>"

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the proxy's loop and return its result."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the proxy is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CALL_TIMEOUT)

    # -- the loop thread's side ---------------------------------------------------------------------------

    def _guard(self) -> asyncio.Lock:
        """Return the lock that keeps a refusal and a re-listen from interleaving."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _listen(self) -> None:
        """Listen on ``self.port``, retrying while the port is briefly held elsewhere."""
        deadline = time.monotonic() + _REBIND_TIMEOUT
        while True:
            try:
                sock = _bind(self.host, self.port)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or self.port == 0 or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._relay, sock=sock)
        self._error = None
        self._listening.set()

    async def _resume_now(self) -> None:
        """Cancel a pending timed resume and listen, unless already listening."""
        async with self._guard():
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._server is None:
                try:
                    await self._listen()
                except OSError as exc:
                    self._error = exc
                    raise

    def _resume_later(self) -> None:
        """The timer's callback: start the re-listen; a failure is kept for ``wait_until_listening``."""
        self._timer = None
        assert self._loop is not None
        self._timed_resume = self._loop.create_task(self._resume_quietly())

    async def _resume_quietly(self) -> None:
        """Listen again, keeping (not raising) an error: no caller waits on the timer."""
        with contextlib.suppress(OSError):
            await self._resume_now()

    async def _stop_listening(self) -> None:
        """Drop any pending re-listen, close the listening socket, then cut every relayed connection."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timed_resume is not None:
            # It may be waiting for the lock we hold: it must not listen again once we let go.
            self._timed_resume.cancel()
            self._timed_resume = None
        self._listening.clear()
        server, self._server = self._server, None
        if server is not None:
            # Closes the listening socket at once; from now on a connect is refused.
            server.close()
        relays = list(self._relays.items())
        self._relays.clear()
        for task, writers in relays:
            for writer in writers:
                _abort(writer)
            task.cancel()
        if relays:
            await asyncio.wait([task for task, _ in relays], timeout=_CALL_TIMEOUT / 2)

    async def _refuse(self, seconds: float) -> None:
        """Stop listening and schedule the re-listen ``seconds`` from now."""
        async with self._guard():
            await self._stop_listening()
            assert self._loop is not None
            self._timer = self._loop.call_later(seconds, self._resume_later)

    async def _shut(self) -> None:
        """Stop listening for good."""
        async with self._guard():
            await self._stop_listening()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """Relay one client connection to a new connection to the target, until either side ends it."""
        task = asyncio.current_task()
        assert task is not None
        if not self._listening.is_set():
            # Accepted just before the listening socket closed, but started after the cut.
            _abort(client_writer)
            return
        writers = [client_writer]
        self._relays[task] = writers
        self.accepted += 1
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
            except OSError:
                # The target is down: the client sees its connection closed without an answer.
                return
            writers.append(upstream_writer)
            await asyncio.gather(
                self._pump(client_reader, upstream_writer, writers),
                self._pump(upstream_reader, client_writer, writers),
            )
        except asyncio.CancelledError:
            # Only a refusal or a close cancels a relay. Ending it quietly keeps asyncio's stream callback
            # (which reads the task's outcome) from logging the cancellation as an error.
            return
        finally:
            self._relays.pop(task, None)
            for writer in writers:
                writer.close()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, writers: list[asyncio.StreamWriter]
    ) -> None:
        """Copy one direction; pass an end of stream on, and cut both sides on an error.

        :param reader: the side bytes come from.
        :param writer: the side they go to.
        :param writers: both sides of the relay.
        """
        try:
            while chunk := await reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                # A half close: the other direction may still be sending.
                writer.write_eof()
        except OSError:
            for side in writers:
                _abort(side)
