"""Reading a finished dag.test() run back from the metadata database."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import select

if TYPE_CHECKING:
    import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dag_files"))


def aleph_params(video: str, **more: Any) -> dict[str, Any]:
    """A complete run conf for the ``aleph_parameters`` test DAG: dag.test() merges run conf into the
    module-level DAG's params, so every one is always given.

    :param video: the ``video`` param.
    :param more: params to set otherwise.
    """
    return {
        "prompt": "make it winter",
        "video": video,
        "aspect_ratio": None,
        "reference_image": None,
        "seed": None,
        "input_mode": "auto",
    } | more


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


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FAILURE = re.compile(r"\b(?:AirflowFailException|AirflowException): ")
# The message ends at a blank line or at the next log line (which starts with a date).
_MESSAGE_END = re.compile(r"\n\n|\n\[?\d{4}-\d\d-\d\d[ T]")
_WHITESPACE = re.compile(r"\s+")


def failure_message(capfd: pytest.CaptureFixture[str]) -> str:
    """The message of the task's (last) failure, from the captured output of dag.test()."""
    out, err = capfd.readouterr()
    text = _ANSI.sub("", out + err)
    messages = []
    for match in _FAILURE.finditer(text):
        rest = text[match.end() :]
        end = _MESSAGE_END.search(rest)
        messages.append(rest[: end.start() if end else len(rest)])
    assert messages, "the task failed, and said why"
    return messages[-1]


def says(failure: str, phrase: str) -> bool:
    """Whether ``failure`` contains ``phrase``, whitespace aside: Airflow 3.0 prints the message through
    rich, wrapped at the terminal width, which may add or drop a space where it breaks a line."""
    return _WHITESPACE.sub("", phrase) in _WHITESPACE.sub("", failure)
