"""``@task.runway_aleph``: a TaskFlow function that says what to edit, run as a RunwayAlephOperator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    DecoratedOperator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_provider_aleph.events import task_failure
from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.inputs import shown
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from airflow.providers.common.compat.sdk import Context, TaskDecorator

    from airflow_provider_aleph.types import SegmindResult

#: What a function may return in its dict: the model's inputs, nothing else. A run's params often shape
#: the return value, so where the worker may read or write (``output_path``, ``local_roots``,
#: ``allowed_hosts``), the connection and the waiting stay decorator arguments, written by the DAG's author.
RETURNABLE = ("prompt", "video", "aspect_ratio", "reference_image", "seed")
#: The XCom key holding the file inputs the function returned (query strings dropped), so that lineage
#: after a deferral, on an operator rebuilt without running the function, still names them.
INPUTS_XCOM_KEY = "segmind_inputs"


def returned_inputs(value: Any) -> dict[str, Any]:
    """The operator fields a decorated function's return value sets: a string is the prompt, a dict
    names some of :data:`RETURNABLE`. Anything else is refused, naming what is allowed.

    :param value: what the function returned.
    """
    if isinstance(value, str):
        return {"prompt": value}
    if isinstance(value, Mapping):
        for key in value:
            if key not in RETURNABLE:
                raise InvalidParameter(
                    str(key),
                    f"cannot be set by the dict a @task.runway_aleph function returns: it may hold only "
                    f"{', '.join(RETURNABLE)}. Give anything else to the decorator itself",
                )
        return dict(value)
    raise InvalidParameter(
        "return value",
        f"a @task.runway_aleph function returns the prompt (a string) or a dict of some of "
        f"{', '.join(RETURNABLE)}; got {shown(value)}",
    )


def _location(value: Any) -> str | None:
    """A file input as lineage names it: the query string (a presigned URL's signature) dropped."""
    return None if value is None else str(value).split("?", 1)[0]


class RunwayAlephDecoratedOperator(DecoratedOperator, RunwayAlephOperator):
    """Run the function, take its return value as the prompt or as some of the model's inputs, then
    submit and wait as :class:`~airflow_provider_aleph.operators.aleph.RunwayAlephOperator` does.

    Returned values win over the same decorator arguments. They are taken as they are: not rendered as
    templates again (they may carry a run's params), but checked like every operator parameter before
    anything is submitted.

    :param python_callable: the decorated function.
    :param op_args: positional arguments of the function (templated).
    :param op_kwargs: keyword arguments of the function (templated).
    :param prompt: the prompt when the function does not return one (templated).
    :param video: the input video when the function does not return one (templated).
    """

    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *RunwayAlephOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **RunwayAlephOperator.template_fields_renderers,
    }
    custom_operator_name = "@task.runway_aleph"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        prompt: str | None = None,
        video: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            prompt=prompt,
            video=video,
            **kwargs,
        )

    def execute(self, context: Context) -> SegmindResult:
        """Run the function, set what it returned, then validate, submit and wait like the operator."""
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        try:
            inputs = returned_inputs(self.python_callable(*self.op_args, **kwargs))
        except InvalidParameter as err:
            raise task_failure(err, retry_safe=True, note="nothing was submitted") from None
        for name, value in inputs.items():
            setattr(self, name, value)
        files = {spec.name: _location(getattr(self, spec.name)) for spec in self.file_inputs}
        context["ti"].xcom_push(key=INPUTS_XCOM_KEY, value=files)
        result: SegmindResult = super().execute(context)
        return result

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> SegmindResult:
        """Resume after the trigger fired, on an operator rebuilt without running the function: the file
        inputs it returned come back from XCom (for lineage), the rest as the operator resumes."""
        ti = context["ti"]
        files = ti.xcom_pull(task_ids=ti.task_id, key=INPUTS_XCOM_KEY, map_indexes=ti.map_index)
        if isinstance(files, dict):
            for spec in self.file_inputs:
                if files.get(spec.name) is not None:
                    setattr(self, spec.name, files[spec.name])
        return super().execute_complete(context, event)


def runway_aleph_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Wrap a function into a Runway Gen4 Aleph edit: ``@task.runway_aleph(output_path=..., ...)``.

    The function returns the prompt, or a dict of some of ``prompt``, ``video``, ``aspect_ratio``,
    ``reference_image`` and ``seed``; every other RunwayAlephOperator parameter is a decorator argument.
    The task returns the operator's result dict.

    :param python_callable: the function to decorate.
    :param kwargs: RunwayAlephOperator parameters and BaseOperator arguments.
    """
    # The function's dict is the job's inputs, not the task's output: never unrolled into XComs.
    kwargs.setdefault("multiple_outputs", False)
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=RunwayAlephDecoratedOperator,
        **kwargs,
    )
