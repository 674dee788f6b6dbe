"""What the triggers of one connection share on one event loop: its settings, one HTTP client, one budget.

A triggerer runs thousands of triggers on one event loop. Instead of a connection lookup and an
``httpx.AsyncClient`` per trigger, the first trigger of a connection reads the connection (without
blocking the loop) and opens one client and one :class:`~airflow_provider_aleph.budget.RequestBudget`;
the others reuse them, and the last one to leave closes the client and drops the entry.

Entries are keyed by the running loop as well as the connection id: a worker waiting with
``deferrable=False`` runs the trigger under its own ``asyncio.run``, and nothing bound to one loop
(futures, timers, pooled connections) may leak into another.
"""

from __future__ import annotations

import asyncio
import weakref
from types import MappingProxyType
from typing import TYPE_CHECKING

from airflow_provider_aleph.budget import RequestBudget
from airflow_provider_aleph.hooks.segmind import SegmindHook

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

    from airflow_provider_aleph.hooks.params import ConnectionParams

#: Calls of one connection in flight at once on one loop. The account allows tens of calls a minute,
#: so a few connections carry them all; the rest of the triggers wait in FIFO order on a semaphore,
#: which costs nothing per waiter, rather than in httpx's pool queue, whose upkeep grows with its length.
MAX_CALLS_IN_FLIGHT = 8

_SHARES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedConnection]] = weakref.WeakKeyDictionary()


class SharedConnection:
    """One connection's settings, async client and request budget on one event loop.

    Get one with :func:`acquire_shared` and give it back with :meth:`release`, once per acquire.

    :param conn_id: the Airflow connection id.
    """

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        #: Triggers holding this share: each polls through the budget.
        self.users = 0
        self.params: ConnectionParams | None = None
        self.client: httpx.AsyncClient | None = None
        self.budget: RequestBudget | None = None
        self.gate: asyncio.Semaphore | None = None
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.conn_id!r}, users={self.users}, budget={self.budget!r})"

    async def _open(self) -> None:
        """Read the connection and open the client, once; callers that arrive meanwhile wait."""
        if self.client is not None:
            return
        async with self._lock:
            if self.client is not None:
                return
            params = await SegmindHook(self.conn_id).aget_conn_params()
            self.budget = RequestBudget(params.max_requests_per_minute, name=self.conn_id)
            self.gate = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
            self.client = SegmindHook.new_async_client(params, max_connections=MAX_CALLS_IN_FLIGHT)
            self.params = params

    def hook(self) -> SegmindHook:
        """A hook whose async calls go through this share's client and budget."""
        if self.params is None or self.client is None:
            raise RuntimeError(f"the shared connection {self.conn_id!r} is not open")
        hook = SegmindHook(self.conn_id)
        hook.share_async(self.params, self.client, self.budget, self.gate)
        return hook

    def poll_interval(self, wanted: float) -> float:
        """The interval a trigger of this share should poll at: ``wanted``, stretched so that all
        of this connection's triggers on this loop fit its request budget.

        :param wanted: the trigger's own poll interval, in seconds.
        """
        if self.budget is None:
            return wanted
        return self.budget.stretched_interval(wanted, self.users)

    async def release(self) -> None:
        """Give the share back; the last user drops the entry and closes the client."""
        if self.users <= 0:
            raise RuntimeError(f"the shared connection {self.conn_id!r} was released more often than acquired")
        self.users -= 1
        if self.users:
            return
        # Drop the entry before awaiting anything: a trigger that starts now opens a fresh one.
        per_loop = _SHARES.get(self._loop)
        if per_loop is not None and per_loop.get(self.conn_id) is self:
            del per_loop[self.conn_id]
            if not per_loop:
                del _SHARES[self._loop]
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()


async def acquire_shared(conn_id: str) -> SharedConnection:
    """The running loop's share of ``conn_id``, opened on first use; release it when done.

    :param conn_id: the Airflow connection id.
    :raises SegmindConfigError: the connection cannot be used (no key, bad extra).
    """
    loop = asyncio.get_running_loop()
    per_loop = _SHARES.setdefault(loop, {})
    share = per_loop.get(conn_id)
    if share is None:
        share = per_loop[conn_id] = SharedConnection(conn_id)
    share.users += 1
    try:
        await share._open()
    except BaseException:
        await share.release()
        raise
    return share


def shared_connections(loop: asyncio.AbstractEventLoop | None = None) -> Mapping[str, SharedConnection]:
    """The shares open on ``loop`` (default: the running loop), by connection id; read-only.

    :param loop: the event loop to look at.
    """
    return MappingProxyType(_SHARES.get(loop or asyncio.get_running_loop(), {}))
