"""An http(s) input's identity from a real web server on loopback (Python's own, which sends
Last-Modified): the same file reads the same, a rewritten one reads differently."""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

from airflow_provider_aleph.inputs import remote_file

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_rewritten_http_input_gets_another_identity(served: str, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x" * 1000)
    os.utime(clip, (1_700_000_000, 1_700_000_000))
    first = remote_file("video", f"{served}/clip.mp4")
    assert first.size == 1000
    assert first.identity is not None
    assert first.identity["size"] == 1000
    assert "mtime" in first.identity
    assert remote_file("video", f"{served}/clip.mp4") == first

    clip.write_bytes(b"y" * 1000)
    os.utime(clip, (1_800_000_000, 1_800_000_000))
    again = remote_file("video", f"{served}/clip.mp4")
    assert again.size == 1000
    assert again.identity != first.identity, "same size, new content: told apart by Last-Modified"
