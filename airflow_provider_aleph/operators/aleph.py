"""RunwayAlephOperator: edit a video with Runway Gen4 Aleph on Segmind, with typed, checked parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.inputs import (
    MAX_VIDEO_BYTES,
    remote_size,
    require_aspect_ratio,
    require_input,
    require_prompt,
    require_seed,
    require_video_size,
)
from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator
from airflow_provider_aleph.storage import is_object_storage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import ObjectStoragePath

ALEPH_MODEL = "runway-gen4-aleph"


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
    """

    template_fields: Sequence[str] = (
        "prompt",
        "video",
        "aspect_ratio",
        "reference_image",
        "seed",
        "input_mode",
        "output_path",
    )
    require_output_url = True

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
        super().__init__(model=ALEPH_MODEL, **kwargs)
        self.prompt = prompt
        self.video = video
        self.aspect_ratio = aspect_ratio
        self.reference_image = reference_image
        self.seed = seed

    def build_payload(self) -> dict[str, Any]:
        """Validate the rendered parameters into the request body."""
        payload: dict[str, Any] = {
            "prompt": require_prompt(self.prompt),
            "video": require_input("video", self.video, required=True),
        }
        optional = {
            "aspect_ratio": require_aspect_ratio(self.aspect_ratio),
            "reference_image": require_input("reference_image", self.reference_image, required=False),
            "seed": require_seed(self.seed),
        }
        payload.update({name: value for name, value in optional.items() if value is not None})
        return payload

    def resolve_inputs(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Presign or upload object storage inputs, and refuse inputs Segmind could not fetch or a video
        over 16 MiB (from the object's metadata or the server's answer) before anything is spent."""
        resolved = dict(payload)
        if is_object_storage(payload["video"]):
            resolved["video"] = self.resolve_input("video", payload["video"], max_bytes=MAX_VIDEO_BYTES)
        else:
            require_video_size(payload["video"])
        reference = payload.get("reference_image")
        if reference is not None and is_object_storage(reference):
            resolved["reference_image"] = self.resolve_input("reference_image", reference)
        elif reference is not None:
            remote_size("reference_image", reference)
        return resolved

    def lineage_inputs(self) -> list[Any]:
        """The input video and reference image, as given."""
        return [value for value in (self.video, self.reference_image) if value]
