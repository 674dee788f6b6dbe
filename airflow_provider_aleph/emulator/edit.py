"""The emulator's visible "edit" (``edit_outputs``): the input re-encoded with a tint and the prompt as a caption.

Segmind's model repaints the video; the emulator cannot, but it can make its output plainly differ from
its input in a way a person checking a preview recognises: a cold blue tint for a wintry prompt
("winter", "snow", "ice", "cold"...), a warm one for any other, and the prompt written across the bottom
of every frame. Small inputs are scaled up to :data:`MIN_WIDTH` so the caption can be read.

Needs PyAV and Pillow (``airflow-provider-aleph[media]``); without them, or for a clip longer than
:data:`MAX_SECONDS`, or for a file that is not a decodable video, the output is the input as it was.
The fetcher runs it in a worker thread, never on the event loop.
"""

from __future__ import annotations

import importlib.util
import re
import textwrap
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from PIL.Image import Image

#: Only clips up to this long are edited (a few seconds, as Aleph makes); longer ones are served as they are.
MAX_SECONDS = 10.0
#: Narrower inputs are scaled up to this width, so the caption is legible; wider ones keep their size up to
#: :data:`MAX_WIDTH`.
MIN_WIDTH = 480
MAX_WIDTH = 1280
COLD = (70, 140, 255)
WARM = (255, 150, 60)
#: How strongly the tint colours each frame (0: not at all, 1: a flat colour).
TINT_STRENGTH = 0.35
_COLD_WORDS = re.compile(r"\b(winter\w*|snow\w*|ice|icy|frost\w*|cold|freez\w*|blizzard\w*|arctic|glacier\w*)\b", re.I)
_DEFAULT_RATE = Fraction(12)


def edit_available() -> bool:
    """Whether PyAV and Pillow are installed (checked without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("av", "PIL"))


def tint_for(prompt: str) -> tuple[int, int, int]:
    """The tint of an edit: cold blue for a wintry prompt, warm orange for any other.

    :param prompt: the job's prompt.
    """
    return COLD if _COLD_WORDS.search(prompt or "") else WARM


def edit_video(source: Path, dest: Path, prompt: str) -> bool:
    """Write ``source`` re-encoded with the prompt's tint and caption to ``dest``; False (and no ``dest``)
    when it is not a short decodable video, so the caller serves the input unchanged.

    :param source: the fetched input video.
    :param dest: where to write the edited one.
    :param prompt: the job's prompt.
    """
    import av

    try:
        with av.open(str(source), mode="r") as container:
            if not container.streams.video:
                return False
            stream = container.streams.video[0]
            seconds = _duration(container, stream)
            if seconds is None or seconds > MAX_SECONDS:
                return False
            rate = _rate(stream)
            with av.open(str(dest), mode="w", format="mp4") as out:
                encoder: Any = None
                for index, frame in enumerate(container.decode(stream)):
                    if encoder is None:
                        encoder = _encoder(out, rate, frame.width, frame.height)
                    image = frame.to_image().resize((encoder.width, encoder.height))
                    edited = av.VideoFrame.from_image(_paint(image, prompt)).reformat(format="yuv420p")
                    edited.pts, edited.time_base = index, 1 / rate
                    out.mux(encoder.encode(edited))
                if encoder is None:
                    raise ValueError("no frame")
                out.mux(encoder.encode(None))
        return True
    except (av.FFmpegError, ValueError, EOFError, OSError):
        dest.unlink(missing_ok=True)
        return False


def _paint(image: Image, prompt: str) -> Image:
    """One frame of the edit: desaturated a little, tinted, captioned with the prompt on a dark band."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageEnhance, ImageFont

    width, height = image.size
    toned = ImageEnhance.Color(image.convert("RGB")).enhance(0.6)
    tinted = PILImage.blend(toned, PILImage.new("RGB", image.size, tint_for(prompt)), TINT_STRENGTH)
    size = max(10, height // 12)
    font = ImageFont.load_default(size=size)
    lines = textwrap.wrap(prompt.strip() or "(no prompt)", width=max(12, int(width / (size * 0.55))))[:2]
    band = len(lines) * (size + 4) + 8
    draw = ImageDraw.Draw(tinted, "RGBA")
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0, 150))
    for row, line in enumerate(lines):
        draw.text((8, height - band + 4 + row * (size + 4)), line, font=font, fill=(255, 255, 255))
    return tinted


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return None


def _rate(stream: Any) -> Fraction:
    for value in (stream.average_rate, stream.guessed_rate):
        if value and 1 <= float(value) <= 120:
            return Fraction(value)
    return _DEFAULT_RATE


def _encoder(out: Any, rate: Fraction, width: int, height: int) -> Any:
    scale = max(MIN_WIDTH / width, 1.0) if width < MIN_WIDTH else min(1.0, MAX_WIDTH / width)
    encoder = out.add_stream("libx264", rate=rate)
    # yuv420p needs even sides.
    encoder.width, encoder.height = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
    encoder.pix_fmt, encoder.time_base = "yuv420p", 1 / rate
    encoder.options = {"preset": "veryfast", "crf": "23", "threads": "2"}
    return encoder
