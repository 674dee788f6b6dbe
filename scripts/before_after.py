"""Draw the README's before/after picture from the last `make demo` run: a frame of one sample video
beside the same frame of its edited output, into docs/demo-before-after.png.

Run `make demo` first (its emulator tints and captions each output: --edit-outputs), then
`.venv/bin/python scripts/before_after.py [NAME]` (NAME: a sample video's stem, default harbour).
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "example_dags" / "sample_videos"
EDITED = REPO / ".airflow-demo" / "edited"
TARGET = REPO / "docs" / "demo-before-after.png"
#: Which frame of each clip (the middle of the 12-frame samples).
FRAME = 6
LABEL_HEIGHT = 28


def frame_of(path: Path, index: int) -> Image.Image:
    """One decoded frame of a video, as an RGB image."""
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number == index:
                return frame.to_image().convert("RGB")
    raise SystemExit(f"{path} has fewer than {index + 1} frames")


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "harbour"
    source = SAMPLES / f"{name}.mp4"
    edited = sorted(EDITED.glob(f"{name}*.mp4"))
    if not edited:
        sys.exit(f"no edited output for {name} in {EDITED.relative_to(REPO)}/: run `make demo` first")
    after = frame_of(edited[0], FRAME)
    # The sample is 64x36: shown at the output's size (nearest neighbour: its pixels, not a blur).
    before = frame_of(source, FRAME).resize(after.size, Image.Resampling.NEAREST)
    width, height = after.size
    canvas = Image.new("RGB", (2 * width + 8, height + LABEL_HEIGHT), (255, 255, 255))
    canvas.paste(before, (0, LABEL_HEIGHT))
    canvas.paste(after, (width + 8, LABEL_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=18)
    draw.text((4, 4), f"before: {source.relative_to(REPO)}", font=font, fill=(0, 0, 0))
    draw.text((width + 12, 4), f"after: {edited[0].relative_to(REPO)}", font=font, fill=(0, 0, 0))
    TARGET.parent.mkdir(exist_ok=True)
    canvas.save(TARGET, "PNG", optimize=True)
    print(f"wrote {TARGET.relative_to(REPO)} ({TARGET.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
