"""RunwayAlephOperator: edit a video with Runway Gen4 Aleph on Segmind, with typed, checked parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.inputs import (
    remote_size,
    require_aspect_ratio,
    require_http_url,
    require_prompt,
    require_seed,
    require_video_size,
)
from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

ALEPH_MODEL = "runway-gen4-aleph"


class RunwayAlephOperator(SegmindSubmitOperator):
    """Edit a video with a text prompt ("make it winter") using Runway Gen4 Aleph.

    Every parameter is checked before anything is submitted; a bad one fails the task at once
    (no Airflow retry) with a message naming it. Waiting, XCom and failures are those of
    :class:`~airflow_provider_aleph.operators.segmind.SegmindSubmitOperator`.

    :param prompt: the edit to make (templated).
    :param video: http(s) URL of the input video, at most 16 MiB; about the first 5 s are used
        (templated).
    :param aspect_ratio: one of ``16:9`` (Segmind's default), ``9:16``, ``4:3``, ``3:4``, ``1:1``,
        ``21:9`` (templated).
    :param reference_image: http(s) URL of an image to influence the style (templated).
    :param seed: an integer for reproducible results; a rendered string of digits is accepted
        (templated).
    """

    template_fields: Sequence[str] = ("prompt", "video", "aspect_ratio", "reference_image", "seed")
    require_output_url = True

    def __init__(
        self,
        *,
        prompt: str,
        video: str,
        aspect_ratio: str | None = None,
        reference_image: str | None = None,
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
            "video": require_http_url("video", self.video, required=True),
        }
        optional = {
            "aspect_ratio": require_aspect_ratio(self.aspect_ratio),
            "reference_image": require_http_url("reference_image", self.reference_image, required=False),
            "seed": require_seed(self.seed),
        }
        payload.update({name: value for name, value in optional.items() if value is not None})
        return payload

    def check_inputs(self, payload: dict[str, Any]) -> None:
        """Refuse inputs Segmind could not fetch, and a video its server reports over 16 MiB."""
        require_video_size(payload["video"])
        if "reference_image" in payload:
            remote_size("reference_image", payload["reference_image"])
