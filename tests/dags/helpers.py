"""Reading a finished dag.test() run back from the metadata database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dag_files"))


def task_instances(dag_run: Any, task_id: str = "edit") -> list[TaskInstance]:
    """The run's task instances of ``task_id``, by map index."""
    with create_session() as session:
        rows = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_run.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.task_id == task_id,
            )
        ).all()
        session.expunge_all()
    return sorted(rows, key=lambda ti: ti.map_index)


def xcom(dag_run: Any, key: str, task_id: str = "edit", map_index: int = -1) -> Any:
    """One XCom value of the run, deserialized; None when absent."""
    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key == key,
            )
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def state(obj: Any) -> str:
    """A run or task instance state as its plain string."""
    value = obj.state
    return str(getattr(value, "value", value))


def register_assets(dag: Any) -> None:
    """Write a DAG's assets to the database, as a dag-processor does.

    ``dag.test()`` on Airflow 3.0 skips this (3.3's does it, and this is a no-op there), and a task
    whose outlets are unknown assets fails there with AirflowInactiveAssetInInletOrOutletException.
    """
    from airflow.version import version
    from packaging.version import Version

    if Version(version) >= Version("3.3"):
        return
    from airflow.dag_processing.collection import AssetModelOperation
    from airflow.serialization.serialized_objects import SerializedDAG

    scheduler_dag = SerializedDAG.from_dict(SerializedDAG.to_dict(dag))
    with create_session() as session:
        operation = AssetModelOperation.collect({dag.dag_id: scheduler_dag})
        assets = operation.sync_assets(session=session)
        session.flush()
        operation.activate_assets_if_possible(assets.values(), session=session)
