"""Thread-safe counters of what the emulator served, read by tests through ``GET /_emulator/stats``.

The event loop thread writes them while a test thread reads them, so every access takes one lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Counters:
    """Counts requests by route, injected faults by kind, and the other emulated incidents."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._events: Counter[str] = Counter()
        self._upload_urls: list[str] = []
        self._fetch_errors: list[str] = []

    def request(self, route: str) -> None:
        """Count one request to ``route`` (``submit``, ``status``, ``result``, ``output``, ...).

        :param route: the route's short name.
        """
        with self._lock:
            self._requests[route] += 1

    def fault(self, kind: str) -> None:
        """Count one injected fault.

        :param kind: the fault's name, e.g. ``429_retry_after`` or ``drop``.
        """
        with self._lock:
            self._faults[kind] += 1

    def event(self, name: str) -> None:
        """Count one emulated incident: ``rate_limited``, ``lost_answers``, ``outage_answers``, ...

        :param name: the counter's name in the stats.
        """
        with self._lock:
            self._events[name] += 1

    def uploaded(self, url: str) -> None:
        """Record an asset URL issued by the files API.

        :param url: the public URL handed back to the client.
        """
        with self._lock:
            self._upload_urls.append(url)

    def fetch_failed(self, reason: str) -> None:
        """Record an input fetch that failed a job.

        :param reason: the job's error text.
        """
        with self._lock:
            self._fetch_errors.append(reason)

    def snapshot(self) -> dict[str, Any]:
        """Return every counter as a JSON-ready dict."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "faults": dict(self._faults),
                "rate_limited": self._events["rate_limited"],
                "insufficient_credits": self._events["insufficient_credits"],
                "lost_answers": self._events["lost_answers"],
                "cut_outputs": self._events["cut_outputs"],
                "interim_answers": self._events["interim_answers"],
                "garbled_answers": self._events["garbled_answers"],
                "outage_answers": self._events["outage_answers"],
                "uploads": {"count": len(self._upload_urls), "urls": list(self._upload_urls)},
                "fetches": self._events["fetches"],
                "edits": self._events["edits"],
                "fetch_failures": {"count": len(self._fetch_errors), "errors": list(self._fetch_errors)},
            }

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._events.clear()
            self._upload_urls.clear()
            self._fetch_errors.clear()
