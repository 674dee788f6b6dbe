"""Bytes the emulator serves: the bundled sample, uploaded assets and fetched inputs on disk,
and generated outputs of any size.

Uploaded assets and fetched input videos live in a temporary directory owned by the running
emulator (created on start, removed on stop), so no set of files is ever held in memory. A
generated output is a real MP4: the bundled sample clip, then a top-level ``free`` box filled with
a pattern of :data:`PATTERN_LENGTH` bytes derived from the request id, up to the requested size.
It decodes like the sample, two requests never share an output, and :func:`output_bytes_iter` /
:func:`expected_output_sha256` recompute it for tests without a download. A size too small for the
clip and a box header (see :func:`min_video_output`) is the bare pattern, not a video.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import re
import shutil
import struct
import tempfile
import threading
import uuid
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterator

SAMPLE_NAME = "sample.mp4"
OVERSIZED_NAME = "oversized.mp4"
OVERSIZED_SIZE = 17 * 1024 * 1024
CHUNK_SIZE = 1024 * 1024
FILE_CHUNK_SIZE = 256 * 1024
# A prime length, so the pattern never lines up with power-of-two chunk or buffer sizes.
PATTERN_LENGTH = 65521
_BOX_HEADER = 8
_MAX_BOX_SIZE = 2**32 - 1
_ZEROS = bytes(CHUNK_SIZE)
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^;,]*)*);base64,(?P<data>.*)", re.DOTALL)


@cache
def sample_bytes() -> bytes:
    """Return the bundled sample clip (about 6 KB, read once)."""
    return (files("airflow_provider_aleph.emulator") / "data" / SAMPLE_NAME).read_bytes()


async def oversized_chunks() -> AsyncGenerator[bytes, None]:
    """Yield the sample clip followed by zero padding up to :data:`OVERSIZED_SIZE` bytes."""
    head = sample_bytes()
    yield head
    remaining = OVERSIZED_SIZE - len(head)
    while remaining > 0:
        size = min(remaining, CHUNK_SIZE)
        yield _ZEROS if size == CHUNK_SIZE else _ZEROS[:size]
        remaining -= size


async def sample_chunks() -> AsyncGenerator[bytes, None]:
    """Yield the bundled sample clip."""
    yield sample_bytes()


async def file_chunks(path: Path) -> AsyncGenerator[bytes, None]:
    """Yield a file's content in chunks, reading in a worker thread.

    :param path: the file to read.
    """
    async with await anyio.open_file(path, "rb") as handle:
        while chunk := await handle.read(FILE_CHUNK_SIZE):
            yield chunk


def min_video_output() -> int:
    """The smallest generated output that is a video (5,955 bytes: the sample and an 8-byte box header);
    the sample's own size is one too. A smaller ``output_size`` makes the bare pattern, not a video."""
    return len(sample_bytes()) + _BOX_HEADER


def output_head(size: int) -> bytes:
    """The start of a generated output of ``size`` bytes: the bundled sample clip and the header of a
    top-level MP4 ``free`` box that spans the rest, so the whole file is a valid MP4 that decodes to the
    sample (players skip ``free`` boxes). Empty when ``size`` cannot hold the clip and a box header (under
    :func:`min_video_output` bytes, except the sample's exact size): such an output is the bare pattern.

    :param size: the output's total size.
    """
    sample = sample_bytes()
    padding = size - len(sample)
    if padding == 0:
        return sample
    if padding < _BOX_HEADER:
        return b""
    if padding <= _MAX_BOX_SIZE:
        return sample + struct.pack(">I4s", padding, b"free")
    # Past 4 GiB a box states its size in 64 bits (size field 1, then the "largesize").
    return sample + struct.pack(">I4sQ", 1, b"free", padding)


def output_bytes_iter(request_id: str, size: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the generated output of ``request_id`` when ``output_size`` is ``size``, in chunks: the
    :func:`output_head` (a playable clip and a ``free`` box header), then a pattern derived from the
    request id filling the box.

    :param request_id: the job's request id, which seeds the pattern.
    :param size: total number of bytes.
    :param chunk_size: bytes per chunk.
    """
    head = output_head(size)
    pattern = hashlib.shake_256(f"segmind-emulator-output:{request_id}".encode()).digest(PATTERN_LENGTH)
    # One tile longer than a chunk lets every chunk be a single slice, whatever its offset.
    tile = pattern * (chunk_size // PATTERN_LENGTH + 2)
    offset = 0
    while offset < size:
        length = min(chunk_size, size - offset)
        lead = head[offset : offset + length]
        start = (offset + len(lead) - len(head)) % PATTERN_LENGTH
        yield lead + tile[start : start + length - len(lead)] if lead else tile[start : start + length]
        offset += length


async def generated_chunks(request_id: str, size: int) -> AsyncGenerator[bytes, None]:
    """Yield :func:`output_bytes_iter` asynchronously, for the output route.

    :param request_id: the job's request id.
    :param size: total number of bytes.
    """
    for chunk in output_bytes_iter(request_id, size):
        yield chunk


def expected_output_sha256(request_id: str, size: int) -> str:
    """Return the hex SHA-256 of the generated output of ``request_id`` at ``size`` bytes.

    :param request_id: the job's request id.
    :param size: total number of bytes.
    """
    digest = hashlib.sha256()
    for chunk in output_bytes_iter(request_id, size):
        digest.update(chunk)
    return digest.hexdigest()


def parse_data_url(text: object) -> tuple[str, bytes]:
    """Return the media type and decoded bytes of a base64 data URL; raise ValueError if malformed.

    :param text: a ``data:<mime>;base64,<payload>`` string.
    """
    match = _DATA_URL.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("expected a string 'data:<mime type>;base64,<base64 payload>'")
    try:
        data = base64.b64decode(match["data"], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the payload is not valid base64 ({exc})") from None
    if not data:
        raise ValueError("the payload is empty")
    return match["mime"].lower(), data


def extension_for(media_type: str) -> str:
    """Return a file name extension (without dot) for ``media_type``; ``bin`` when unknown.

    :param media_type: a MIME type such as ``video/mp4``.
    """
    guessed = mimetypes.guess_extension(media_type, strict=False)
    return guessed.lstrip(".") if guessed else "bin"


@dataclass(frozen=True)
class Asset:
    """A file stored by the files API.

    :param path: where its bytes are on disk.
    :param media_type: the MIME type from its data URL.
    :param size: its length in bytes.
    """

    path: Path
    media_type: str
    size: int


class FileStore:
    """A temporary directory for uploaded assets and fetched inputs, and the index of the assets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._root: Path | None = None
        self._assets: dict[str, Asset] = {}

    def open(self) -> None:
        """Create the directory; a no-op when it exists."""
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="segmind-emulator-"))
                self._make_folders(self._root)

    def close(self) -> None:
        """Remove the directory and everything in it."""
        with self._lock:
            root, self._root = self._root, None
            self._assets.clear()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    @property
    def root(self) -> Path | None:
        """Return the directory, or None when closed."""
        return self._root

    @staticmethod
    def _make_folders(root: Path) -> None:
        (root / "assets").mkdir(exist_ok=True)
        (root / "inputs").mkdir(exist_ok=True)

    def _require_root(self) -> Path:
        if self._root is None:
            raise RuntimeError("the emulator's file store is closed")
        return self._root

    def input_path(self, request_id: str) -> Path:
        """Return where the fetched input video of ``request_id`` is kept.

        :param request_id: the job's request id.
        """
        return self._require_root() / "inputs" / f"{request_id}.video"

    def save_asset(self, media_type: str, data: bytes) -> str:
        """Write an uploaded file and return its public name ``{id}.{ext}``; blocking, call from a thread.

        :param media_type: the MIME type from the data URL.
        :param data: the decoded bytes.
        """
        name = f"{uuid.uuid4().hex}.{extension_for(media_type)}"
        path = self._require_root() / "assets" / name
        path.write_bytes(data)
        with self._lock:
            self._assets[name] = Asset(path=path, media_type=media_type, size=len(data))
        return name

    def asset(self, name: str) -> Asset | None:
        """Return the stored asset called ``name``, or None.

        :param name: the ``{id}.{ext}`` part of its URL.
        """
        with self._lock:
            return self._assets.get(name)

    def reset(self) -> None:
        """Delete every stored asset and input, keeping the directory."""
        with self._lock:
            self._assets.clear()
            root = self._root
            if root is None:
                return
            for folder in ("assets", "inputs"):
                shutil.rmtree(root / folder, ignore_errors=True)
            self._make_folders(root)
