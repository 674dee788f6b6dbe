"""A person answering the human reviews of a ``dag.test()`` run, through the api-server's own handler.

``dag.test()`` (Airflow 3.3) parks a human-in-the-loop task in ``awaiting_input`` and waits until a
response recorded from outside flips it back to ``scheduled``. :class:`Reviewer` is that outside: a
thread that finds each review waiting in the metadata database and answers it by calling the REST
API's ``PATCH .../hitlDetails`` handler (the same function, with the same checks and the same resume of
the task, minus HTTP and the login), one answer per review, in order.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass
class Review:
    """One answered review: what the reviewer was shown and what they chose."""

    task_id: str
    subject: str
    body: str
    options: list[str]
    defaults: list[str] | None
    answer: str


class Reviewer(threading.Thread):
    """Answers the reviews of ``dag_id`` as they come, with ``answers`` in order.

    :param dag_id: the DAG whose reviews to answer.
    :param answers: the option chosen for the first review, the second, ...
    :param user: the reviewer's name, as the simple auth manager would report it.
    """

    def __init__(self, dag_id: str, answers: list[str], user: str = "reviewer") -> None:
        super().__init__(name=f"reviewer-{dag_id}", daemon=True)
        self.dag_id = dag_id
        self.answers = list(answers)
        self.user = user
        self.reviews: list[Review] = []
        #: The last error met while answering (answering is retried after one).
        self.error: BaseException | None = None
        self._finished = threading.Event()
        self._stale: set[Any] = set()

    def __enter__(self) -> Reviewer:
        # Reviews left waiting by an earlier run (of a failed test) are not this run's to answer.
        self._stale = {ti.id for ti, _ in self._waiting()}
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finished.set()
        self.join(30)
        if self.answers and self.error is not None:
            raise RuntimeError(f"the reviewer left {len(self.answers)} answer(s) unsent") from self.error

    def run(self) -> None:
        failures = 0
        while self.answers and not self._finished.wait(0.2):
            try:
                self._answer_one()
                failures = 0
            except Exception as exc:  # e.g. SQLite busy while dag.test() writes: try again, up to a point
                self.error = exc
                failures += 1
                if failures >= 25:
                    return

    def _waiting(self, session: Any = None) -> list[Any]:
        """``(task instance, HITL detail)`` of each unanswered review of the DAG that waits for input."""
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        query = (
            select(TaskInstance, HITLDetail)
            .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
            .where(
                TaskInstance.dag_id == self.dag_id,
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                HITLDetail.responded_at.is_(None),
            )
        )
        if session is not None:
            return [tuple(row) for row in session.execute(query)]
        with create_session() as own:
            return [tuple(row) for row in own.execute(query)]

    def _answer_one(self) -> None:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.utils.session import create_session

        with create_session() as session:
            waiting = [row for row in self._waiting(session) if row[0].id not in self._stale]
            if not waiting:
                return
            ti, detail = waiting[0]
            answer = self.answers.pop(0)
            self.reviews.append(
                Review(ti.task_id, detail.subject, detail.body or "", list(detail.options), detail.defaults, answer)
            )
            update_hitl_detail(
                dag_id=ti.dag_id,
                dag_run_id=ti.run_id,
                task_id=ti.task_id,
                update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[answer]),
                user=SimpleAuthManagerUser(username=self.user, role="admin"),
                session=session,
                map_index=ti.map_index,
            )
