"""Operator extra link: the output video of a finished Segmind job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import TaskInstanceKey

OUTPUT_URL_XCOM_KEY = "output_url"


def reset_output_url(ti: Any) -> None:
    """Push an empty ``output_url`` as a task starts.

    The link is evaluated at every deferral; with the key present it shows "no output yet"
    instead of logging a missing XCom. Empty, not None: Airflow 3.0 refuses a None XCom.
    """
    ti.xcom_push(key=OUTPUT_URL_XCOM_KEY, value="")


class SegmindOutputLink(BaseOperatorLink):
    """Links a finished task to its output (the URL Segmind returned)."""

    name = "Segmind output"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """The output URL pushed by the task, or an empty string before there is one."""
        url = XCom.get_value(ti_key=ti_key, key=OUTPUT_URL_XCOM_KEY)
        return url if isinstance(url, str) else ""
