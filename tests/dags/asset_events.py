"""Asset-triggered runs under dag.test(): the run it creates consumes given asset events.

dag.test() always creates a manual run; the scheduler, for an asset-triggered run, also links the run to
the asset events it consumes (table ``dagrun_asset_event``), and tasks read them back through the
execution API as ``triggering_asset_events``. ``consuming`` writes those real rows, in the transaction
that inserts the run, so the tasks see what a scheduled run would have seen.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.models.asset import AssetEvent, AssetModel, association_table
from airflow.models.dagrun import DagRun
from sqlalchemy import event, insert, select

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def consuming(dag_id: str, asset_name: str, extras: list[dict[str, Any]], **source: Any) -> Iterator[None]:
    """While open, the next run of ``dag_id`` inserted consumes one new event of the asset per extra.

    The asset must be registered already (``register_assets`` on Airflow 3.0; dag.test() does it on 3.3
    before it creates the run).

    :param dag_id: the DAG whose run consumes the events.
    :param asset_name: the asset's name.
    :param extras: each event's ``extra``, in order.
    :param source: ``source_dag_id``, ``source_run_id``, ``source_task_id``, ``source_map_index`` for all.
    """
    done: list[int] = []

    def link(_mapper: Any, connection: Any, run: DagRun) -> None:
        if run.dag_id != dag_id or done:
            return
        asset_id = connection.scalar(select(AssetModel.id).where(AssetModel.name == asset_name))
        assert asset_id is not None, f"asset {asset_name} is not registered"
        for extra in extras:
            event_id = connection.execute(
                insert(AssetEvent.__table__).values(asset_id=asset_id, extra=extra, **source)
            ).inserted_primary_key[0]
            connection.execute(insert(association_table).values(dag_run_id=run.id, event_id=event_id))
            done.append(event_id)

    event.listen(DagRun, "after_insert", link)
    try:
        yield
    finally:
        event.remove(DagRun, "after_insert", link)
