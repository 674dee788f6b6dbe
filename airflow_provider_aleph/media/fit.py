"""Fit a video to what a model uses (``fit_input=True``): its first seconds, re-encoded under a size limit.

Everything is streamed: PyAV reads the source through a file object (a local file or an object store's
ranged reads), decodes one frame at a time, and encodes it straight into a local MP4; no step holds
more than a few frames, so a 2 GiB source costs what a 20 MB one does. The output is H.264 in MP4
(``yuv420p``, no audio: the model ignores sound), at most :data:`MAX_SIDE` pixels on its long side, at
a bitrate that keeps it under the target size with a margin.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import BinaryIO

#: Fitted files aim this far under a model's limit (Segmind's "16 MB": aim under 15 MB, in either unit).
TARGET_BYTES = 15 * 1000 * 1000
#: The bitrate a fitted clip never exceeds: a few seconds at this rate look like the source already.
MAX_BIT_RATE = 12_000_000
#: The longest side of a fitted clip, in pixels: larger sources are scaled down (the model's own
#: output is 720p-class; a 4K input only costs upload time).
MAX_SIDE = 1920
#: A clip this much longer than asked still counts as short enough (container durations are rounded).
SECONDS_TOLERANCE = 0.05
#: The frame rate assumed when the source does not say.
DEFAULT_RATE = Fraction(24)
_ENCODER_PRESET = "veryfast"
#: Decoder and encoder threads: enough for speed, and a memory use that does not grow with the machine's cores.
THREADS = 4


class NotAVideo(ValueError):
    """The source has no video stream that FFmpeg can decode."""


@dataclass(frozen=True)
class Probe:
    """What the head of a video says of itself.

    :param seconds: its duration, or None when neither the stream nor the container says.
    :param width: the first frame's width.
    :param height: the first frame's height.
    :param codec: the video codec's name.
    """

    seconds: float | None
    width: int
    height: int
    codec: str


@dataclass(frozen=True)
class Fitted:
    """A fitted clip written to disk.

    :param path: where it is.
    :param size: its size in bytes.
    :param seconds: its length (frames times frame duration).
    :param frames: how many frames it has.
    :param width: its width.
    :param height: its height.
    :param bit_rate: the encoder's target bitrate.
    """

    path: str
    size: int
    seconds: float
    frames: int
    width: int
    height: int
    bit_rate: int


def probe(source: str | BinaryIO) -> Probe:
    """Read a video's header and decode its first frame (proof it is a video FFmpeg can decode).

    :param source: a local path or a binary file object (seekable, as object store files are).
    :raises NotAVideo: when it is not.
    """
    import av

    try:
        with av.open(source, mode="r") as container:
            if not container.streams.video:
                raise NotAVideo("it has no video stream")
            stream = container.streams.video[0]
            first = next(iter(container.decode(stream)), None)
            if first is None:
                raise NotAVideo("its video stream has no frame")
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / av.time_base
            return Probe(seconds, first.width, first.height, stream.codec_context.name)
    except NotAVideo:
        raise
    except (av.FFmpegError, EOFError, UnicodeDecodeError) as exc:
        raise NotAVideo(str(exc) or type(exc).__name__) from None


def fits(found: Probe, size: int | None, *, seconds: float, max_bytes: int | None) -> bool:
    """Whether a source already fits: at most ``seconds`` long (known) and at most ``max_bytes``.

    :param found: what :func:`probe` said.
    :param size: its size in bytes, if known.
    :param seconds: the longest clip wanted.
    :param max_bytes: the model's limit, or None for none.
    """
    short = found.seconds is not None and found.seconds <= seconds + SECONDS_TOLERANCE
    small = max_bytes is None or (size is not None and size <= max_bytes)
    return short and small


def bit_rate_for(seconds: float, target_bytes: int) -> int:
    """The encoder bitrate that keeps a clip of ``seconds`` under ``target_bytes``: the rate control may
    overshoot by about one buffer (one second at the rate), and the container adds a little.

    :param seconds: the clip's length.
    :param target_bytes: the size to stay under.
    """
    budget = target_bytes * 8 * 0.9 / (seconds + 1.0)
    return int(min(MAX_BIT_RATE, max(100_000, budget)))


def fit_video(
    source: str | BinaryIO,
    dest: str | os.PathLike[str],
    *,
    seconds: float,
    target_bytes: int = TARGET_BYTES,
) -> Fitted:
    """Write the first ``seconds`` of ``source`` to ``dest`` as H.264 MP4 under ``target_bytes``.

    Tries the bitrate of :func:`bit_rate_for`; should the result still be too large (a source that
    defeats the rate control), tries once more at half of it.

    :param source: a local path or a seekable binary file object.
    :param dest: the local file to write.
    :param seconds: how much of the start to keep.
    :param target_bytes: the size the result must stay under.
    :raises NotAVideo: when the source cannot be decoded.
    """
    rate = bit_rate_for(seconds, target_bytes)
    for _ in range(2):
        if hasattr(source, "seek"):
            source.seek(0)
        fitted = _encode(source, os.fspath(dest), seconds=seconds, bit_rate=rate)
        if fitted.size <= target_bytes:
            return fitted
        rate //= 2
    raise NotAVideo(f"it could not be encoded under {target_bytes} bytes (the last try made {fitted.size})")


def _encode(source: str | BinaryIO, dest: str, *, seconds: float, bit_rate: int) -> Fitted:
    import av

    try:
        with av.open(source, mode="r") as container:
            if not container.streams.video:
                raise NotAVideo("it has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = THREADS
            fps = _rate(stream)
            limit = math.floor(seconds * fps + 1e-9) or 1
            with av.open(dest, mode="w", format="mp4") as out:
                encoder: Any = None
                count, start = 0, None
                for frame in container.decode(stream):
                    if frame.time is not None:
                        start = frame.time if start is None else start
                        if frame.time - start >= seconds - 1e-6:
                            break
                    if encoder is None:
                        encoder = _encoder(out, fps, frame.width, frame.height, bit_rate)
                    picture = frame.reformat(width=encoder.width, height=encoder.height, format="yuv420p")
                    # The encoder's rate control reads each frame's duration from its own time base.
                    picture.pts, picture.time_base = count, 1 / fps
                    out.mux(encoder.encode(picture))
                    count += 1
                    if count >= limit:
                        break
                if encoder is None:
                    raise NotAVideo("its video stream has no frame")
                out.mux(encoder.encode(None))
                width, height = encoder.width, encoder.height
    except NotAVideo:
        raise
    except (av.FFmpegError, EOFError, UnicodeDecodeError) as exc:
        raise NotAVideo(str(exc) or type(exc).__name__) from None
    return Fitted(dest, os.path.getsize(dest), float(count / fps), count, width, height, bit_rate)


def _rate(stream: Any) -> Fraction:
    for value in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if value and 1 <= float(value) <= 240:
            return Fraction(value)
    return DEFAULT_RATE


def _encoder(out: Any, fps: Fraction, width: int, height: int, bit_rate: int) -> Any:
    scale = min(1.0, MAX_SIDE / max(width, height))
    # yuv420p needs even sides.
    even_width, even_height = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
    encoder = out.add_stream("libx264", rate=fps)
    encoder.width, encoder.height, encoder.pix_fmt = even_width, even_height, "yuv420p"
    encoder.time_base = 1 / fps
    kbps = f"{bit_rate // 1000}k"
    # A capped buffer of one second bounds the overshoot that bit_rate_for allows for.
    encoder.options = {"preset": _ENCODER_PRESET, "b": kbps, "maxrate": kbps, "bufsize": kbps, "threads": str(THREADS)}
    return encoder
