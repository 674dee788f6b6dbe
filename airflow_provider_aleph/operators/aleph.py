"""RunwayAlephOperator: edit a video with Runway Gen4 Aleph on Segmind, with typed, checked parameters."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.inputs import MIB, FileInput, shown
from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import ObjectStoragePath

ALEPH_MODEL = "runway-gen4-aleph"
#: Segmind's limit on an input video ("max 16MB"), read generously as MiB.
MAX_VIDEO_BYTES = 16 * MIB
#: Aleph uses about the first 5 seconds of the input video.
VIDEO_SECONDS_USED = 5.0
#: A typical Aleph job's duration, from the model page ("~169 s"): where the poll scheduler starts.
ALEPH_EXPECTED_DURATION = 169.0
ASPECT_RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")
#: Seeds are sent as JSON integers; a signed 64-bit range is what any backend can hold.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
SEED_DIGITS = len(str(SEED_MAX))
INTEGER = re.compile(r"-?[0-9]+")


def require_prompt(value: Any) -> str:
    """A non-empty text prompt."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter(
            "prompt",
            f"must be a non-empty string describing the edit (e.g. 'make it winter'); got {shown(value)}",
        )
    return value


def require_aspect_ratio(value: Any) -> str | None:
    """None, or one of the aspect ratios Aleph supports."""
    if value is None or value in ASPECT_RATIOS:
        return value
    raise InvalidParameter("aspect_ratio", f"must be one of {', '.join(ASPECT_RATIOS)} or None; got {shown(value)}")


def require_seed(value: Any) -> int | None:
    """None or a 64-bit integer; a string of digits (a rendered template) is converted."""
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if text in ("", "None"):
            return None
        # Length first: int() refuses strings past Python's digit limit with a bare ValueError.
        if len(text) <= SEED_DIGITS + 1 and INTEGER.fullmatch(text):
            number = int(text)
    if number is not None and SEED_MIN <= number <= SEED_MAX:
        return number
    raise InvalidParameter(
        "seed", f"must be an integer from {SEED_MIN} to {SEED_MAX} (or a string of digits); got {shown(value)}"
    )


class RunwayAlephOperator(SegmindSubmitOperator):
    """Edit a video with a text prompt ("make it winter") using Runway Gen4 Aleph.

    Every parameter is checked before anything is submitted; a bad one fails the task at once
    (no Airflow retry) with a message naming it. Waiting, XCom and failures are those of
    :class:`~airflow_provider_aleph.operators.segmind.SegmindSubmitOperator`.

    :param prompt: the edit to make (templated).
    :param video: the input video, at most 16 MiB (about the first 5 s are used): an http(s) URL, an
        object storage URI (``s3://``, ``gs://``, ``file://``, ...) or an ``ObjectStoragePath``; object
        storage is presigned or uploaded as ``input_mode`` says (templated).
    :param aspect_ratio: one of ``16:9`` (Segmind's default), ``9:16``, ``4:3``, ``3:4``, ``1:1``,
        ``21:9`` (templated).
    :param reference_image: an image to influence the style, given like ``video`` (templated).
    :param seed: an integer for reproducible results; a rendered string of digits is accepted
        (templated).

    ``expected_duration`` defaults to Aleph's typical 169 s (the model page's figure): the first poll
    comes when about a quarter of such jobs are done, and what this connection sees refines it.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "video",
        "aspect_ratio",
        "reference_image",
        "seed",
        "segmind_conn_id",
        "input_mode",
        "output_path",
        "if_output_exists",
    )
    require_output_url = True
    file_inputs = (
        FileInput("video", max_bytes=MAX_VIDEO_BYTES, seconds_used=VIDEO_SECONDS_USED, required=True),
        FileInput("reference_image"),
    )
    # Only the declared fields are files: a prompt that happens to look like a URI is text.
    resolve_every_storage_value = False

    def __init__(
        self,
        *,
        prompt: str,
        video: str | ObjectStoragePath,
        aspect_ratio: str | None = None,
        reference_image: str | ObjectStoragePath | None = None,
        seed: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("expected_duration", ALEPH_EXPECTED_DURATION)
        super().__init__(model=ALEPH_MODEL, **kwargs)
        self.prompt = prompt
        self.video = video
        self.aspect_ratio = aspect_ratio
        self.reference_image = reference_image
        self.seed = seed

    def given_inputs(self) -> dict[str, Any]:
        """The parameters as given, by payload field."""
        return {
            "prompt": self.prompt,
            "video": self.video,
            "aspect_ratio": self.aspect_ratio,
            "reference_image": self.reference_image,
            "seed": self.seed,
        }

    def build_payload(self) -> dict[str, Any]:
        """Validate the rendered parameters into the request body."""
        given = self.given_inputs()
        payload = {
            "prompt": require_prompt(given["prompt"]),
            "video": given["video"],
            "aspect_ratio": require_aspect_ratio(given["aspect_ratio"]),
            "reference_image": given["reference_image"],
            "seed": require_seed(given["seed"]),
        }
        return self.check_files(
            {name: value for name, value in payload.items() if value is not None or name == "video"}
        )
