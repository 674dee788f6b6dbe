"""Preview frames of a copied output (``preview=True``): a poster and a contact sheet written beside it.

For ``<folder>/<stem>.mp4`` the worker writes ``<folder>/<stem>.poster.jpg`` (the middle frame, at the
video's size) and ``<folder>/<stem>.sheet.jpg`` (:data:`SHEET_FRAMES` evenly spaced frames in a grid,
each with its time), through ``ObjectStoragePath``: a local folder and a bucket alike. The video is read
as a stream from the store (PyAV reads the file object; nothing is downloaded whole) and only the frames
kept are held in memory. A person reviewing the edit looks at these before anyone watches the video.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_aleph.exceptions import SegmindError
from airflow_provider_aleph.storage.outbound import write_atomically

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath
    from PIL.Image import Image

    from airflow_provider_aleph.types import TaskLog

#: Frames on the contact sheet, and its columns.
SHEET_FRAMES = 6
SHEET_COLUMNS = 3
#: The widest a sheet tile gets (pixels); a smaller video keeps its own width.
TILE_WIDTH = 320
TILE_GAP = 4
JPEG_QUALITY = 85
POSTER_SUFFIX = ".poster.jpg"
SHEET_SUFFIX = ".sheet.jpg"


class PreviewError(SegmindError):
    """The previews of a copied output could not be made (not a decodable video) or written (the store).

    :param message: what went wrong, naming the output.
    :param retryable: whether another attempt may succeed (a store's transient failure).
    """

    def __init__(self, message: str, *, retryable: bool = False, request_id: str | None = None) -> None:
        super().__init__(message, request_id=request_id)
        self.retryable = retryable


@dataclass(frozen=True)
class Previews:
    """Where the previews of one output are.

    :param poster: ``<stem>.poster.jpg`` beside the output.
    :param sheet: ``<stem>.sheet.jpg`` beside the output.
    """

    poster: ObjectStoragePath
    sheet: ObjectStoragePath

    def result_keys(self) -> dict[str, str]:
        """The result dict's (and asset event extra's) ``preview_path`` and ``contact_sheet_path``."""
        return {"preview_path": str(self.poster), "contact_sheet_path": str(self.sheet)}


def preview_paths(output: ObjectStoragePath) -> Previews:
    """The poster and sheet paths of ``output``: beside it, named after its stem.

    :param output: the copied output.
    """
    stem = output.stem or output.name
    return Previews(output.parent / f"{stem}{POSTER_SUFFIX}", output.parent / f"{stem}{SHEET_SUFFIX}")


def write_previews(output: ObjectStoragePath, *, log: TaskLog, keep_existing: bool = False) -> Previews:
    """Write the poster and the contact sheet of ``output`` beside it; return where they are.

    :param output: the copied output video.
    :param log: the task's logger.
    :param keep_existing: keep previews already there (an output reused under ``if_output_exists="reuse"``
        is the file they were made from); only missing ones are made. False rewrites both.
    """
    previews = preview_paths(output)
    wanted = [path for path in (previews.poster, previews.sheet) if not (keep_existing and _exists(path, output))]
    if not wanted:
        log.info("Reusing the previews of %s: %s, %s", output, previews.poster, previews.sheet)
        return previews
    poster, tiles = _sample(output)
    try:
        if previews.poster in wanted:
            write_atomically(previews.poster.fs, str(previews.poster.path), _jpeg(poster))
        if previews.sheet in wanted:
            write_atomically(previews.sheet.fs, str(previews.sheet.path), _jpeg(contact_sheet(tiles)))
    except Exception as exc:
        raise PreviewError(
            f"The previews of {output} could not be written: {type(exc).__name__}: {exc}",
            retryable=not isinstance(exc, PermissionError | FileNotFoundError | NotADirectoryError),
        ) from None
    log.info("Wrote the previews of %s: poster %s, contact sheet %s", output, previews.poster, previews.sheet)
    return previews


def contact_sheet(tiles: list[tuple[float | None, Image]]) -> Image:
    """A grid of frames, :data:`SHEET_COLUMNS` wide, each labelled with its time in the video.

    :param tiles: (time in seconds or None, frame) in the order shown.
    """
    from PIL import Image, ImageDraw

    columns = min(SHEET_COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    width, height = tiles[0][1].size
    sheet = Image.new("RGB", (columns * (width + TILE_GAP) + TILE_GAP, rows * (height + TILE_GAP) + TILE_GAP))
    draw = ImageDraw.Draw(sheet)
    for index, (seconds, tile) in enumerate(tiles):
        x = TILE_GAP + (index % columns) * (width + TILE_GAP)
        y = TILE_GAP + (index // columns) * (height + TILE_GAP)
        sheet.paste(tile, (x, y))
        if seconds is not None:
            draw.text((x + 4, y + 2), f"{seconds:.2f}s", fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    return sheet


def _exists(path: ObjectStoragePath, output: ObjectStoragePath) -> bool:
    try:
        return bool(path.exists())
    except Exception as exc:
        raise PreviewError(f"Could not tell whether the previews of {output} exist: {exc}", retryable=True) from None


def _jpeg(image: Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _sample(output: ObjectStoragePath) -> tuple[Image, list[tuple[float | None, Image]]]:
    """The middle frame and :data:`SHEET_FRAMES` evenly spaced thumbnails, read in one decoding pass."""
    import av

    try:
        total = _frame_count(output)
        poster_at = total // 2
        picks = sorted({min(total - 1, int((i + 0.5) * total / SHEET_FRAMES)) for i in range(SHEET_FRAMES)})
        poster: Image | None = None
        tiles: list[tuple[float | None, Image]] = []
        with output.open("rb") as handle, av.open(handle, mode="r") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index == poster_at:
                    poster = frame.to_image()
                if index in picks:
                    image = frame.to_image()
                    if image.width > TILE_WIDTH:
                        image = image.resize((TILE_WIDTH, max(1, round(image.height * TILE_WIDTH / image.width))))
                    tiles.append((frame.time, image))
                if index >= max(poster_at, picks[-1]):
                    break
    except PreviewError:
        raise
    except (av.FFmpegError, IndexError, ValueError, EOFError) as exc:
        raise PreviewError(f"The output {output} is not a video that can be decoded for its previews: {exc}") from None
    except OSError as exc:
        raise PreviewError(f"The output {output} could not be read for its previews: {exc}", retryable=True) from None
    if poster is None or not tiles:
        raise PreviewError(f"The output {output} has no frame to preview")
    return poster, tiles


def _frame_count(output: ObjectStoragePath) -> int:
    """How many frames the first video stream has: its header's count, else its packets counted (no decoding)."""
    import av

    with output.open("rb") as handle, av.open(handle, mode="r") as container:
        if not container.streams.video:
            raise PreviewError(f"The output {output} has no video stream to preview")
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        count = sum(1 for packet in container.demux(stream) if packet.size)
    if count == 0:
        raise PreviewError(f"The output {output} has no video frame to preview")
    return count
