"""Property: whatever a user gives the Aleph operator, it is either refused locally, naming the parameter,
or accepted by the API. A 400 from the API after our own checks passed would be a parameter we let
through and paid a round trip for; an accepted job we did not count would be a spend we cannot see.

Each example builds a real ``RunwayAlephOperator``, runs its checks and input resolution (HEAD requests
to the inputs, uploads of local files to the files API) and then ``hook.submit`` against one emulator
over loopback, which fetches the inputs of every job it accepts, as Segmind does.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from airflow_provider_aleph.emulator import Emulator
from airflow_provider_aleph.emulator.assets import sample_bytes
from airflow_provider_aleph.exceptions import SegmindBadRequest
from airflow_provider_aleph.inputs import InvalidParameter
from airflow_provider_aleph.operators.aleph import ALEPH_MODEL, ASPECT_RATIOS, RunwayAlephOperator, require_seed
from airflow_provider_aleph.storage import INPUT_MODES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CONN_ID = "segmind_property"
API_KEY = "fake-property-key-0123456789abcdef"
#: The operator's parameters a refusal may name.
PARAMETERS = frozenset({"prompt", "video", "aspect_ratio", "reference_image", "seed", "input_mode"})


class Place:
    """The run's emulator and files, for the placeholders in the input strategies."""

    def __init__(self, emulator: Emulator, files: Path) -> None:
        self.emulator = emulator
        self.files = files
        self.accepted = 0

    def fill(self, value: Any) -> Any:
        """Fill ``{base}`` (the emulator's URL), ``{host}`` (its host:port) and ``{files}`` (a folder with
        clip.mp4 and empty.mp4) into a string."""
        if isinstance(value, str):
            base = self.emulator.base_url
            host = base.split("://", 1)[1]
            return value.replace("{base}", base).replace("{host}", host).replace("{files}", str(self.files))
        return value


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Place]:
    """One emulator for every example (fetching inputs, as Segmind does), and its connection."""
    files = tmp_path_factory.mktemp("inputs")
    (files / "clip.mp4").write_bytes(sample_bytes())
    (files / "empty.mp4").write_bytes(b"")
    with Emulator(api_key=API_KEY, latency=0.2, fetch_inputs=True) as emu, pytest.MonkeyPatch.context() as patch:
        connection = {"conn_type": "segmind", "password": API_KEY, "host": emu.base_url, "extra": {}}
        connection["extra"] = {"upload_url": emu.base_url}
        patch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
        yield Place(emu, files)


# -- strategies ---------------------------------------------------------------------------------------

NOT_STRINGS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=4),
    st.lists(st.sampled_from(ASPECT_RATIOS), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)
#: Text without ':' or '/', so it never looks like a URI (a random host name would be a DNS lookup).
JUNK_TEXT = st.text(alphabet=st.characters(exclude_characters=":/"), max_size=12)
WHITESPACE = st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\u00a0\u2003\u3000\u2028"), max_size=4)


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` five times in six: with five parameters, about two examples in five are valid throughout."""
    return st.sampled_from([valid] * 5 + [invalid]).flatmap(lambda chosen: chosen)


prompts = mostly(
    st.one_of(
        st.text(min_size=1, max_size=60).filter(str.strip),
        st.sampled_from(
            ["make it winter", "❄ make it snow ❄", "雪景色にして", "x", "\u200b", "[emulator:fail]", "a\x00b"]
        ),
    ),
    st.one_of(st.text(max_size=60), WHITESPACE, NOT_STRINGS),
)

NEAR_RATIOS = [
    "16:9 ",
    " 9:16",
    "16/9",
    "16:10",
    "16 : 9",
    "169",
    "1:1.0",
    "21:09",
    "4:3\n",
    "\uff11\uff16:\uff19",
    "16:9:1",
    "",
]
aspect_ratios = mostly(
    st.one_of(st.none(), st.sampled_from(ASPECT_RATIOS)),
    st.one_of(
        st.sampled_from(NEAR_RATIOS),
        st.sampled_from(ASPECT_RATIOS).map(lambda ratio: ratio.replace(":", "x")),
        JUNK_TEXT,
        NOT_STRINGS,
    ),
)

seeds = mostly(
    st.one_of(
        st.none(),
        st.integers(),
        st.integers(min_value=-(2**200), max_value=2**200),
        st.from_regex(r"[ \t]*-?[0-9]{1,30}[ \t]*", fullmatch=True),
        st.sampled_from(["", " ", "None"]),
    ),
    st.one_of(
        st.sampled_from(["+5", "4.0", "1e3", "0x10", "1_000", "٣", "forty-two", "--1", "-"]),
        st.floats(),
        st.booleans(),
        JUNK_TEXT,
        st.lists(st.integers(), max_size=2),
    ),
)

# Placeholders: {base} is the emulator, {files} a folder holding clip.mp4 and empty.mp4. No input names a
# host outside this machine: every check and fetch stays on loopback.
GOOD_INPUTS = [
    "{base}/samples/sample.mp4",
    " {base}/samples/sample.mp4\t",
    "{base}/samples/sample.mp4?clip=7#t=1",
    "HTTP://{host}/samples/sample.mp4",
    "file://{files}/clip.mp4",
]
BAD_INPUTS = [
    "{base}/samples/oversized.mp4",
    "{base}/samples/missing.mp4",
    "{base}/no/such/route",
    "http://127.0.0.1:9/clip.mp4",
    "http://",
    "https:///samples/sample.mp4",
    "//{host}/samples/sample.mp4",
    "ftp://127.0.0.1:9/clip.mp4",
    "gopher://127.0.0.1/clip.mp4",
    "mailto:someone@example.invalid",
    "data:video/mp4;base64,AAAAIGZ0eXBpc29t",
    "file:///nonexistent-aleph-input/clip.mp4",
    "file://{files}/empty.mp4",
    "file://{files}",
    "{files}/clip.mp4",
    "not a url",
    "",
    "   ",
]
inputs = mostly(st.sampled_from(GOOD_INPUTS), st.one_of(st.sampled_from(BAD_INPUTS), JUNK_TEXT, NOT_STRINGS))
references = st.one_of(st.none(), inputs)


# -- the property -------------------------------------------------------------------------------------


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    prompt=prompts,
    video=inputs,
    aspect_ratio=aspect_ratios,
    reference_image=references,
    seed=seeds,
    input_mode=st.sampled_from(INPUT_MODES),
)
@example(
    prompt="make it winter",
    video="{base}/samples/sample.mp4",
    aspect_ratio="16:9",
    reference_image="file://{files}/clip.mp4",
    seed=" 42 ",
    input_mode="auto",
)
def test_refused_locally_naming_a_parameter_or_accepted_by_the_api(
    place: Place,
    prompt: Any,
    video: Any,
    aspect_ratio: Any,
    reference_image: Any,
    seed: Any,
    input_mode: str,
) -> None:
    emulator = place.emulator
    operator = RunwayAlephOperator(
        task_id="property",
        prompt=place.fill(prompt),
        video=place.fill(video),
        aspect_ratio=place.fill(aspect_ratio),
        reference_image=place.fill(reference_image),
        seed=seed,
        input_mode=input_mode,
        segmind_conn_id=CONN_ID,
        local_roots=[place.files],
    )
    try:
        checked = _checked_payload(operator)
        if isinstance(checked, InvalidParameter):
            event(f"refused: {checked.parameter}")
            assert checked.parameter in PARAMETERS, checked
            assert f"Invalid parameter '{checked.parameter}'" in str(checked)
            assert emulator.submissions == place.accepted, "a refusal must come before anything is spent"
            return
        try:
            submitted = operator.hook.submit(ALEPH_MODEL, checked)
        except SegmindBadRequest as err:
            pytest.fail(f"our checks passed {checked!r}, but the API refused it: {err}")
    finally:
        operator.hook.close()
    event("accepted")
    place.accepted += 1
    assert emulator.submissions == place.accepted, "one accepted submit is one paid job, no more"
    assert emulator.jobs[submitted.request_id].payload == checked, "the API received exactly what we checked"


def _checked_payload(operator: RunwayAlephOperator) -> dict[str, Any] | InvalidParameter:
    """What ``execute`` does before it submits: the checked, resolved payload, or the refusal."""
    try:
        return operator.resolve_inputs(operator.build_payload())
    except InvalidParameter as refused:
        return refused


def test_a_seed_with_too_many_digits_is_an_invalid_parameter() -> None:
    with pytest.raises(InvalidParameter) as refused:
        require_seed("9" * 5000)
    assert refused.value.parameter == "seed"
