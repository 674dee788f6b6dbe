"""Assets and lineage: tell Airflow (and OpenLineage, when installed) which video became which output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import Asset

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from airflow.providers.common.compat.sdk import Context


def record_asset_events(context: Context, outlets: Iterable[Any], result: Mapping[str, Any]) -> None:
    """Attach where the output landed to the asset event of each ``Asset`` outlet of the task.

    Downstream DAGs scheduled on the asset read ``output_path``, ``request_id``, ``output_url`` and
    ``cost`` (None when the API sent none) from the triggering event's ``extra``, and ``preview_path`` and
    ``contact_sheet_path`` when previews were made. Nothing is attached when no copy was made.
    """
    if not result.get("output_path"):
        return
    extra = {
        "output_path": result["output_path"],
        "request_id": result["request_id"],
        "output_url": result.get("output_url"),
        "cost": result.get("cost"),
    }
    # With preview=True: the poster and contact sheet beside the output.
    extra.update({key: result[key] for key in ("preview_path", "contact_sheet_path") if result.get(key)})
    for outlet in outlets or ():
        if isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra = dict(extra)


def dataset_name(location: Any) -> tuple[str, str] | None:
    """OpenLineage (namespace, name) for a URL, object storage URI or ObjectStoragePath; None if unknown.

    Query strings are dropped: a presigned URL's signature is a credential.
    """
    text = str(location) if location is not None else ""
    parts = urlsplit(text)
    if not parts.scheme:
        return None
    if parts.scheme == "file":
        return "file", parts.path
    if not parts.netloc:
        return None
    namespace = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    if parts.scheme in ("http", "https"):
        return namespace, parts.path or "/"
    return namespace, parts.path.lstrip("/") or "/"


def openlineage_facets(inputs: list[Any], outputs: list[Any]) -> Any:
    """An ``OperatorLineage`` of input and output datasets (the OpenLineage provider must be installed)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    def datasets(locations: list[Any]) -> list[Any]:
        names = [dataset_name(location) for location in locations if location is not None]
        return [Dataset(namespace=ns, name=name) for ns, name in (n for n in names if n is not None)]

    return OperatorLineage(inputs=datasets(inputs), outputs=datasets(outputs))
