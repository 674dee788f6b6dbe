"""RunwayAlephOperator's own parameters: good values pass, bad ones fail with a message naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.operators.aleph import (
    ASPECT_RATIOS,
    require_aspect_ratio,
    require_prompt,
    require_seed,
)


def assert_names(err: InvalidParameter, parameter: str) -> None:
    assert err.parameter == parameter
    assert f"'{parameter}'" in str(err)


# -- prompt --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["make it winter", " x ", "é"])
def test_prompt_accepts_non_empty_text(prompt: str) -> None:
    assert require_prompt(prompt) == prompt


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", None, 3, ["make it winter"]])
def test_prompt_rejects_empty_or_non_text(prompt: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_prompt(prompt)
    assert_names(caught.value, "prompt")


# -- aspect_ratio --------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", ["16:9", "9:16", "4:3", "3:4", "1:1", "21:9"])
def test_aspect_ratio_accepts_each_supported_value(ratio: str) -> None:
    assert require_aspect_ratio(ratio) == ratio


def test_aspect_ratio_accepts_none() -> None:
    assert require_aspect_ratio(None) is None


def test_supported_aspect_ratios_are_the_six_documented() -> None:
    assert set(ASPECT_RATIOS) == {"16:9", "9:16", "4:3", "3:4", "1:1", "21:9"}


@pytest.mark.parametrize("ratio", ["2:1", "16/9", "16:9 ", "", 1.77, ["16:9"]])
def test_aspect_ratio_rejects_other_values_and_lists_the_allowed_ones(ratio: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_aspect_ratio(ratio)
    assert_names(caught.value, "aspect_ratio")
    for allowed in ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9"):
        assert allowed in str(caught.value)


# -- seed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (42, 42),
        (0, 0),
        ("42", 42),
        (" 7 ", 7),
        ("-3", -3),
        (None, None),
        (2**63 - 1, 2**63 - 1),
        (str(-(2**63)), -(2**63)),
    ],
)
def test_seed_accepts_integers_and_digit_strings(seed: Any, expected: int | None) -> None:
    result = require_seed(seed)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "seed",
    ["forty-two", 4.5, 4.0, True, False, "4-2", "--4", "4-", "4.5", [4], 2**63, -(2**63) - 1, "9" * 5000],
)
def test_seed_rejects_non_integers(seed: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_seed(seed)
    assert_names(caught.value, "seed")


def test_seed_rejects_unicode_digits_with_a_message_naming_seed() -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_seed("²")
    assert_names(caught.value, "seed")
