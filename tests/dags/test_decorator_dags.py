"""Real DAG runs (dag.test) of ``@task.runway_aleph`` against the emulator over loopback: the function's
return value becomes the job's inputs, the task defers and returns the operator's result dict."""

from __future__ import annotations

import pytest

from tests.dags.helpers import failure_message, says, state, task_instances, xcom

pytestmark = pytest.mark.dag


def test_a_returned_string_is_the_prompt_and_the_task_returns_the_result(segmind_conn):
    import decorator_test_dags

    video = segmind_conn.sample_url()
    dag_run = decorator_test_dags.plain.test(run_conf={"video": video})

    assert state(dag_run) == "success"
    (job,) = segmind_conn.jobs.values()
    assert job.payload == {"prompt": "make it winter", "video": video}
    result = xcom(dag_run, "return_value")
    assert result["request_id"] == job.request_id
    assert result["status"] == "COMPLETED"
    assert result["output_url"] == f"{segmind_conn.base_url}/outputs/{job.request_id}.mp4"
    assert xcom(dag_run, "request_id") == job.request_id
    # What the function returned outlives the deferral (the resumed operator never runs the function).
    assert xcom(dag_run, "segmind_inputs") == {"video": video, "reference_image": None}


def test_templated_decorator_arguments_and_function_arguments_are_rendered_once(segmind_conn, tmp_path):
    import decorator_test_dags

    video = segmind_conn.sample_url()
    conf = {"video": video, "season": "winter", "seed": 5, "output_dir": tmp_path.as_uri()}
    dag_run = decorator_test_dags.templated.test(run_conf=conf)

    assert state(dag_run) == "success"
    (job,) = segmind_conn.jobs.values()
    assert job.payload == {"prompt": "make it winter", "video": video, "aspect_ratio": "9:16", "seed": 5}
    result = xcom(dag_run, "return_value")
    assert result["output_path"] == f"{tmp_path.as_uri()}/{job.request_id}.mp4"
    assert (tmp_path / f"{job.request_id}.mp4").stat().st_size > 0
    assert xcom(dag_run, "status") is None, "a function annotated -> dict is not unrolled into XComs"


def test_a_template_inside_a_returned_value_is_sent_as_text_not_rendered_again(segmind_conn, tmp_path):
    # The run's conf reaches the function through a rendered argument: rendering what the function
    # returns once more would let a run's conf evaluate templates (variables, connections).
    import decorator_test_dags

    conf = {"video": segmind_conn.sample_url(), "season": "{{ run_id }}", "seed": 5, "output_dir": tmp_path.as_uri()}
    dag_run = decorator_test_dags.templated.test(run_conf=conf)

    assert state(dag_run) == "success"
    (job,) = segmind_conn.jobs.values()
    assert job.payload["prompt"] == "make it {{ run_id }}"


def test_mapped_over_three_videos_submits_three_jobs_and_returns_three_results(segmind_conn, tmp_path):
    import decorator_test_dags

    videos = [f"{segmind_conn.sample_url()}?clip={n}" for n in range(3)]
    dag_run = decorator_test_dags.mapped.test(run_conf={"videos": videos, "output_dir": tmp_path.as_uri()})

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 3
    assert sorted(job.payload["video"] for job in segmind_conn.jobs.values()) == videos
    assert {job.payload["seed"] for job in segmind_conn.jobs.values()} == {11}
    assert [ti.map_index for ti in task_instances(dag_run)] == [0, 1, 2]
    results = [xcom(dag_run, "return_value", map_index=n) for n in range(3)]
    by_video = {job.payload["video"]: job.request_id for job in segmind_conn.jobs.values()}
    for n, result in enumerate(results):
        assert result["status"] == "COMPLETED"
        assert result["request_id"] == by_video[videos[n]]
        assert xcom(dag_run, "request_id", map_index=n) == result["request_id"]
        assert (tmp_path / f"{result['request_id']}.mp4").stat().st_size > 0


FORBIDDEN = [
    pytest.param("local_roots", ["/"], id="local-roots"),
    pytest.param("allowed_hosts", ["169.254.169.254"], id="allowed-hosts"),
    pytest.param("output_path", "file:///etc/aleph.mp4", id="output-path"),
    pytest.param("segmind_conn_id", "someone_elses", id="conn-id"),
    pytest.param("model", "another-model", id="model"),
]


@pytest.mark.parametrize(("key", "value"), FORBIDDEN)
def test_a_returned_key_beyond_the_models_inputs_fails_before_any_submission(key, value, segmind_conn, capfd):
    import decorator_test_dags

    returned = {"prompt": "make it winter", "video": segmind_conn.sample_url(), key: value}
    dag_run = decorator_test_dags.returned.test(run_conf={"returned": returned})

    assert state(dag_run) == "failed"
    (ti,) = task_instances(dag_run)
    assert ti.try_number == 1, "a refused return value is not retried: it would be refused again"
    assert segmind_conn.submissions == 0
    failure = failure_message(capfd)
    assert says(failure, f"Invalid parameter '{key}'")
    assert says(failure, "it may hold only prompt, video, aspect_ratio, reference_image, seed")


@pytest.mark.parametrize("returned", [None, 42, ["make it winter"]], ids=["none", "number", "list"])
def test_a_return_value_neither_prompt_nor_dict_fails_before_any_submission(returned, segmind_conn, capfd):
    import decorator_test_dags

    dag_run = decorator_test_dags.returned.test(run_conf={"returned": returned})

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    failure = failure_message(capfd)
    assert says(failure, "Invalid parameter 'return value'")
    assert says(failure, "returns the prompt (a string) or a dict")


def test_returned_values_go_through_the_operators_own_checks(segmind_conn, capfd):
    import decorator_test_dags

    returned = {"prompt": "make it winter", "video": segmind_conn.sample_url(), "aspect_ratio": "2:1"}
    dag_run = decorator_test_dags.returned.test(run_conf={"returned": returned})

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    assert says(failure_message(capfd), "Invalid parameter 'aspect_ratio': must be one of 16:9")


def test_the_taskflow_example_edits_every_video_of_its_config(segmind_conn):
    from tests.support.examples import load_example

    segmind_conn.config.latency = 0.0  # done by the first poll, so the default 10 s interval never waits
    example = load_example("example_aleph_taskflow")
    videos = [f"{segmind_conn.sample_url()}?clip={n}" for n in range(2)]

    dag_run = example.dag.test(run_conf={"videos": videos, "season": "autumn"})

    assert state(dag_run) == "success"
    payloads = sorted((job.payload for job in segmind_conn.jobs.values()), key=lambda p: p["video"])
    assert payloads == [{"prompt": "make it autumn", "video": v, "aspect_ratio": "16:9"} for v in videos]
    results = [xcom(dag_run, "return_value", map_index=n) for n in range(2)]
    assert {r["request_id"] for r in results} == set(segmind_conn.jobs)
