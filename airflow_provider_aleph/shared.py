"""What the triggers of one connection share on one event loop: its settings, one HTTP client, one
request budget and the poll scheduler that hands the budget's slots to their polls.

A triggerer runs thousands of triggers on one event loop. Instead of a connection lookup and an
``httpx.AsyncClient`` per trigger, the first trigger of a connection reads the connection (without
blocking the loop) and opens one client, one :class:`~airflow_provider_aleph.budget.RequestBudget` and
one :class:`~airflow_provider_aleph.polling.PollScheduler`; the others reuse them, and the last one
to leave closes the client and drops the entry.

Entries are keyed by the running loop as well as the connection id: a worker waiting with
``deferrable=False`` runs the trigger under its own ``asyncio.run``, and nothing bound to one loop
(futures, timers, pooled connections) may leak into another.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import TYPE_CHECKING

from airflow_provider_aleph.budget import RequestBudget
from airflow_provider_aleph.hooks.connection import REREAD_SECONDS
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.polling import PollPolicy, PollScheduler

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx

    from airflow_provider_aleph.hooks.connection import ConnectionParams

log = logging.getLogger(__name__)


class AsyncChannel:
    """An async client, request budget and call gate owned elsewhere (one connection's share on one
    event loop), with the connection's settings, which it re-reads so a rotated key takes effect.

    The settings are read again when the API rejects the key they hold (once for every caller that
    saw the rejection), and at least every :data:`REREAD_SECONDS` otherwise.

    :param params: the connection's settings, already read.
    :param client: the shared async client; the hook never closes it.
    :param budget: the request budget every async attempt waits on; None for no limit.
    :param gate: bounds how many calls are in the client at once; waiting callers queue here, in
        order, instead of in the client's connection pool (whose queue costs grow with its length).
    :param reread: reads the connection's settings afresh; None to keep ``params`` for good.
    :param clock: monotonic seconds, for the re-read interval.
    """

    def __init__(
        self,
        params: ConnectionParams,
        client: httpx.AsyncClient,
        budget: RequestBudget | None = None,
        gate: asyncio.Semaphore | None = None,
        *,
        reread: Callable[[], Awaitable[ConnectionParams]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.params = params
        self.client = client
        self.budget = budget
        self.gate = gate
        self._reread = reread
        self._clock = clock
        self._read_at = clock()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r}, budget={self.budget!r})"

    async def current(self) -> ConnectionParams:
        """The settings, read again first when they are older than :data:`REREAD_SECONDS`."""
        if self._reread is not None and self._clock() - self._read_at >= REREAD_SECONDS:
            async with self._lock:
                if self._clock() - self._read_at >= REREAD_SECONDS:
                    await self._refresh()
        return self.params

    async def after_rejection(self, rejected_key: str) -> bool:
        """Re-read the settings after the API rejected ``rejected_key``; whether the key is now another.

        :param rejected_key: the key the rejected call carried.
        """
        if self._reread is None:
            return False
        async with self._lock:
            if self.params.api_key == rejected_key:  # nobody has re-read since that call
                await self._refresh()
        return self.params.api_key != rejected_key

    async def _refresh(self) -> None:
        assert self._reread is not None
        try:
            self.params = await self._reread()
        except Exception as err:
            # A connection that cannot be read now (deleted, a secrets backend down) keeps the settings
            # in hand: the calls themselves say whether they still work.
            log.warning("Could not read the Segmind connection again (%s); keeping its settings", err)
        self._read_at = self._clock()


#: Calls of one connection in flight at once on one loop. The account allows tens of calls a minute,
#: so a few connections carry them all; the rest of the triggers wait in FIFO order on a semaphore,
#: which costs nothing per waiter, rather than in httpx's pool queue, whose upkeep grows with its length.
MAX_CALLS_IN_FLIGHT = 8

_SHARES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedConnection]] = weakref.WeakKeyDictionary()


class SharedConnection:
    """One connection's settings, async client, request budget and poll scheduler on one event loop.

    Get one with :func:`acquire_shared` and give it back with :meth:`release`, once per acquire.

    :param conn_id: the Airflow connection id.
    """

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        #: Triggers holding this share: each polls through the budget.
        self.users = 0
        self.channel: AsyncChannel | None = None
        self.scheduler: PollScheduler | None = None
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        budget = self.channel.budget if self.channel else None
        return f"{type(self).__name__}({self.conn_id!r}, users={self.users}, budget={budget!r})"

    async def _open(self) -> None:
        """Read the connection and open the client, once; callers that arrive meanwhile wait. The channel
        reads the connection again later: at once when the API rejects its key, and every few minutes."""
        if self.channel is not None:
            return
        async with self._lock:
            if self.channel is not None:
                return
            params = await SegmindHook(self.conn_id).aget_conn_params()
            policy = PollPolicy(params.poll_policy)
            # The adaptive policy also adapts the rate: down at once on a 429, back up gradually.
            budget = RequestBudget(
                params.max_requests_per_minute, name=self.conn_id, adaptive=policy is PollPolicy.ADAPTIVE
            )
            self.scheduler = PollScheduler(budget, policy)
            self.channel = AsyncChannel(
                params=params,
                client=SegmindHook.new_async_client(params, max_connections=MAX_CALLS_IN_FLIGHT),
                budget=budget,
                gate=asyncio.Semaphore(MAX_CALLS_IN_FLIGHT),
                # A fresh hook reads the connection afresh: a rotated key reaches every waiting trigger.
                reread=self._read,
            )

    async def _read(self) -> ConnectionParams:
        return await SegmindHook(self.conn_id).aget_conn_params()

    def hook(self) -> SegmindHook:
        """A hook whose async calls go through this share's client and budget."""
        if self.channel is None:
            raise RuntimeError(f"the shared connection {self.conn_id!r} is not open")
        return SegmindHook(self.conn_id, channel=self.channel)

    def polls(self) -> PollScheduler:
        """The scheduler that hands this share's request budget to its triggers' polls."""
        if self.scheduler is None:
            raise RuntimeError(f"the shared connection {self.conn_id!r} is not open")
        return self.scheduler

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
        channel, self.channel = self.channel, None
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            await scheduler.close()
        if channel is not None:
            await channel.client.aclose()


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
