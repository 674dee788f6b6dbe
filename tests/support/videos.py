"""Test videos made on the fly with PyAV (never committed), and checks of what the provider wrote.

:func:`make_video` writes an H.264 MP4 of any length: ``noise=True`` gives every frame fresh random
pixels, which no encoder can compress, so a high bitrate turns into a large file quickly (a 30 s,
40 MB source in a few seconds of encoding). Frames are made with Pillow from random bytes; no numpy.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

#: The large source the fit tests use: long and over Aleph's 16 MB limit.
BIG_SECONDS = 30
BIG_BYTES = 40 * 1024 * 1024


def make_video(
    path: Path,
    *,
    seconds: float,
    size: tuple[int, int] = (160, 90),
    fps: int = 12,
    noise: bool = False,
    grey: bool = False,
    bit_rate: int | None = None,
) -> Path:
    """Write an H.264 MP4 to ``path``: a colour ramp (small file) or random noise (large file).

    :param path: where to write it.
    :param seconds: its length.
    :param size: width and height (even numbers).
    :param fps: frames per second.
    :param noise: random pixels in every frame, so the file's size follows ``bit_rate``.
    :param grey: every frame mid-grey (neither warm nor cold), instead of the colour ramp.
    :param bit_rate: the encoder's target bits per second (None: its default quality).
    """
    from PIL import Image

    width, height = size

    def frames() -> Iterator[Image.Image]:
        for index in range(round(seconds * fps)):
            if noise:
                yield Image.frombytes("RGB", size, os.urandom(width * height * 3))
            elif grey:
                yield Image.new("RGB", size, (128, 128, 128))
            else:
                shade = int(255 * index / max(1, seconds * fps))
                yield Image.new("RGB", size, (shade, 128, 255 - shade))

    return write_clip(path, frames(), size=size, fps=fps, bit_rate=bit_rate)


def write_clip(
    path: Path, images: Iterable[Any], *, size: tuple[int, int], fps: int = 12, bit_rate: int | None = None
) -> Path:
    """Encode Pillow images, one a frame, as an H.264 MP4 at ``path``.

    :param path: where to write it.
    :param images: the frames, each of ``size``.
    :param size: width and height (even numbers).
    :param fps: frames per second.
    :param bit_rate: the encoder's target bits per second (None: its default quality).
    """
    import av

    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        options = {"preset": "ultrafast"}
        if bit_rate:
            stream.bit_rate = bit_rate
            # A noise frame needs all the bits it can get: let each one take them.
            options |= {"x264-params": f"vbv-maxrate={bit_rate // 1000}:vbv-bufsize={bit_rate // 1000}"}
        stream.options = options
        for index, image in enumerate(images):
            frame = av.VideoFrame.from_image(image)
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def probe(source: Any) -> dict[str, Any]:
    """What a video holds when decoded: frame count, duration in seconds, size, codec.

    :param source: a path or a binary file object.
    """
    import av

    with av.open(source if not hasattr(source, "__fspath__") else str(source)) as container:
        stream = container.streams.video[0]
        times = [frame.time for frame in container.decode(stream)]
        return {
            "frames": len(times),
            "seconds": (max(t for t in times if t is not None) + 1 / float(stream.average_rate or 1)) if times else 0,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "codec": stream.codec_context.name,
        }


def jpeg_size(path: Path) -> tuple[int, int]:
    """The width and height of a JPEG file (Pillow checks it is one)."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "JPEG", f"{path} is {image.format}, not a JPEG"
        image.load()
        return image.size
