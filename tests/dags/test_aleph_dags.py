"""Real DAG runs (dag.test) of the Aleph operator against the emulator over loopback."""

from __future__ import annotations

import pytest

from tests.dags.helpers import aleph_params, state, task_instances, xcom

pytestmark = pytest.mark.dag


@pytest.fixture
def video(segmind_conn) -> str:
    return f"{segmind_conn.base_url}/samples/sample.mp4"


def _payloads(emulator) -> list[dict]:
    return [job.payload for job in emulator.jobs.values()]


@pytest.mark.parametrize("dag_name", ["deferrable", "in_worker"])
def test_success_returns_the_result_dict_and_pushes_request_id(dag_name, segmind_conn, video):
    import aleph_test_dags

    dag_run = getattr(aleph_test_dags, dag_name).test(run_conf={"video": video})

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    (request_id,) = segmind_conn.jobs
    result = xcom(dag_run, "return_value")
    assert result["request_id"] == request_id
    assert result["status"] == "COMPLETED"
    assert result["output_url"] == f"{segmind_conn.base_url}/outputs/{request_id}.mp4"
    assert result["output_path"] is None
    assert isinstance(result["metrics"], dict)
    assert xcom(dag_run, "request_id") == request_id
    assert xcom(dag_run, "output_url") == result["output_url"]


@pytest.mark.parametrize("dag_name", ["failing_with_retries", "failing_in_worker"])
def test_failed_request_fails_once_without_airflow_retry(dag_name, segmind_conn, video):
    import aleph_test_dags

    dag_run = getattr(aleph_test_dags, dag_name).test(run_conf={"video": video})

    assert state(dag_run) == "failed"
    (ti,) = task_instances(dag_run)
    assert state(ti) == "failed"
    assert ti.try_number == 1, "a FAILED request must not be retried (a resubmit is billed again)"
    assert segmind_conn.submissions == 1
    (request_id,) = segmind_conn.jobs
    assert xcom(dag_run, "request_id") == request_id


INVALID = [
    pytest.param({"prompt": ""}, id="empty-prompt"),
    pytest.param({"prompt": None}, id="no-prompt"),
    pytest.param({"aspect_ratio": "2:1"}, id="aspect-ratio"),
    pytest.param({"seed": "forty-two"}, id="seed-word"),
    pytest.param({"seed": 4.5}, id="seed-float"),
    pytest.param({"video": "file:///nonexistent-aleph-input/clip.mp4"}, id="video-object-missing"),
    pytest.param({"input_mode": "fetch"}, id="input-mode"),
    pytest.param({"video": "not a url"}, id="video-not-url"),
    pytest.param({"reference_image": "ftp://example.invalid/a.png"}, id="reference-image-scheme"),
    pytest.param({"video": "{base}/samples/oversized.mp4"}, id="video-over-16mb"),
    pytest.param({"video": "{base}/samples/missing.mp4"}, id="video-missing"),
    pytest.param({"reference_image": "{base}/samples/missing.png"}, id="reference-image-missing"),
]


def test_an_unreachable_input_host_is_transient_and_left_to_airflow_retries(segmind_conn, video, capfd):
    # Changed on purpose (issue 11): a network error on the input's host before any submit is transient
    # (the failure table's row): Airflow's retries may run, since nothing was spent.
    import aleph_test_dags

    dag_run = aleph_test_dags.parameters.test(run_conf=aleph_params("http://127.0.0.1:9/clip.mp4"))

    assert state(dag_run) == "failed"
    (ti,) = task_instances(dag_run)
    assert ti.try_number == 3, "retries=2: each try refused before the submit"
    assert segmind_conn.submissions == 0
    out, err = capfd.readouterr()
    assert "Invalid parameter 'video'" in out + err
    assert "could not reach" in out + err


@pytest.mark.parametrize("conf", INVALID)
def test_invalid_parameter_fails_before_any_submission(conf, segmind_conn, video, capfd):
    import aleph_test_dags

    bad = {k: v.format(base=segmind_conn.base_url) if isinstance(v, str) else v for k, v in conf.items()}
    dag_run = aleph_test_dags.parameters.test(run_conf=aleph_params(video) | bad)

    assert state(dag_run) == "failed"
    (ti,) = task_instances(dag_run)
    assert ti.try_number == 1, "a bad parameter is not retried: it would be refused again"
    assert segmind_conn.submissions == 0
    (name,) = conf
    out, err = capfd.readouterr()
    assert f"Invalid parameter '{name}'" in out + err


def test_valid_optional_parameters_reach_the_api(segmind_conn, video):
    import aleph_test_dags

    dag_run = aleph_test_dags.parameters.test(
        run_conf=aleph_params(video) | {"aspect_ratio": "21:9", "seed": 3, "reference_image": video}
    )

    assert state(dag_run) == "success"
    (payload,) = _payloads(segmind_conn)
    assert payload == {
        "prompt": "make it winter",
        "video": video,
        "aspect_ratio": "21:9",
        "seed": 3,
        "reference_image": video,
    }


def test_templated_prompt_and_seed_are_rendered_and_coerced(segmind_conn, video):
    import aleph_test_dags

    dag_run = aleph_test_dags.templated.test(run_conf={"video": video, "season": "autumn", "seed": 1234})

    assert state(dag_run) == "success"
    (payload,) = _payloads(segmind_conn)
    assert payload["prompt"] == "make it autumn"
    assert payload["seed"] == 1234
    assert payload["aspect_ratio"] == "9:16"


@pytest.mark.parametrize("dag_name", ["expand", "expand_literal"])
def test_expand_over_three_videos_submits_three_jobs(dag_name, segmind_conn):
    import aleph_test_dags

    videos = [f"{segmind_conn.base_url}/samples/sample.mp4?clip={n}" for n in range(3)]
    dag_run = getattr(aleph_test_dags, dag_name).test(run_conf={"videos": videos, "base": segmind_conn.base_url})

    assert state(dag_run) == "success"
    tis = task_instances(dag_run)
    assert [ti.map_index for ti in tis] == [0, 1, 2]
    assert all(state(ti) == "success" for ti in tis)
    assert segmind_conn.submissions == 3
    assert sorted(p["video"] for p in _payloads(segmind_conn)) == sorted(videos)
    results = [xcom(dag_run, "return_value", map_index=i) for i in range(3)]
    assert len({r["request_id"] for r in results}) == 3
    assert all(r["output_url"].endswith(f"{r['request_id']}.mp4") for r in results)
