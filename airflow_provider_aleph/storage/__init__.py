"""Object storage in and out, through Airflow's ObjectStoragePath (fsspec) and never a hand-written client.

- In: :func:`resolve_input` turns an ``s3://``, ``gs://``, ``file://``... input into an https URL Segmind
  can fetch, presigned or uploaded to Segmind's files API, after checking the object from its metadata.
- Out: :func:`copy_output` streams a finished job's output URL into a path in constant memory, retrying
  a cut download in place and never leaving a partial file under the final name.
"""

from __future__ import annotations

from airflow_provider_aleph.storage.inbound import (
    DEFAULT_PRESIGN_SECONDS,
    INPUT_MODES,
    check_input,
    content_type_of,
    require_input_mode,
    resolve_input,
)
from airflow_provider_aleph.storage.outbound import OutputCopyError, copy_output
from airflow_provider_aleph.storage.paths import Source, classify, display_url, is_http_url, is_object_storage, to_path

__all__ = [
    "DEFAULT_PRESIGN_SECONDS",
    "INPUT_MODES",
    "OutputCopyError",
    "Source",
    "check_input",
    "classify",
    "content_type_of",
    "copy_output",
    "display_url",
    "is_http_url",
    "is_object_storage",
    "require_input_mode",
    "resolve_input",
    "to_path",
]
