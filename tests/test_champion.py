"""The champion policy without MLflow: what the registry holds in, the alias and its reason out
(tests/test_registry.py runs the same policy through tracking.register on real stores)."""

from __future__ import annotations

import pytest

from mnist_pipeline.champion import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    Champion,
    Decision,
    alias_held,
    already_registered,
    by_comparison,
    required_gain,
    without_comparison,
)

TEST_SET = "a+b"
N = 1000


def champion(version: int = 1, accuracy: float | None = 0.90, test_set: str | None = TEST_SET, description: str = "") -> Champion:
    return Champion(version=version, description=description, test_set=test_set, accuracy=accuracy)


def test_the_first_version_registered_is_the_champion():
    assert without_comparison(1, None, TEST_SET) == Decision(CHAMPION_ALIAS, "the first version registered")


def test_a_champion_with_an_evaluation_on_the_same_test_set_is_compared():
    assert without_comparison(2, champion(), TEST_SET) is None


def test_a_better_version_takes_the_champion_alias_and_the_former_champion_says_so():
    decision = by_comparison(5, champion(version=1), 0.95, N, beats=True)
    assert decision.alias == CHAMPION_ALIAS
    assert decision.why == "beats champion version 1: test accuracy 95.0000% against 90.0000% on the same 1000 images"
    assert decision.former_champion == 1
    assert decision.former_champion_description == "was champion until version 5 beat it (95.0000% against 90.0000%)"


@pytest.mark.parametrize("accuracy", [0.80, 0.90])
def test_a_worse_version_or_a_tie_is_the_challenger_and_the_champion_stays(accuracy):
    decision = by_comparison(2, champion(version=1), accuracy, N, beats=False)
    assert decision.alias == CHALLENGER_ALIAS and decision.former_champion is None
    assert decision.why == (
        f"does not beat champion version 1: test accuracy {accuracy:.4%} against 90.0000% on the same 1000 images "
        "(a tie keeps the champion)"
    )


def test_one_image_more_right_is_the_least_gain_that_beats_the_champion():
    gain = required_gain(N)
    assert gain == pytest.approx(0.0005)
    assert 0 < gain < 1 / N  # a tie (no gain) does not pass, one image more right (1/N) does


def test_a_champion_set_by_hand_without_an_evaluation_makes_a_challenger():
    decision = without_comparison(3, champion(version=2, accuracy=None, test_set=None), TEST_SET)
    assert decision.alias == CHALLENGER_ALIAS and decision.former_champion is None
    assert decision.why == (
        "not compared with champion version 2: it has no evaluation of its own to compare with (an alias set by hand?); "
        "move `champion` by hand to the version you trust"
    )


def test_a_champion_tested_on_another_test_set_is_not_compared():
    decision = without_comparison(4, champion(version=1), "other+set")
    assert decision == Decision(
        CHALLENGER_ALIAS, "not compared with champion version 1: it was tested on another test set (a+b, this one other+set)"
    )
    unknown = without_comparison(4, champion(version=1, test_set=None), "other+set")
    assert unknown.why.endswith("tested on another test set (unknown, this one other+set)")


def test_an_attempt_that_moved_the_alias_and_stopped_keeps_it_with_its_reason():
    moved = champion(version=3, description="champion: beats champion version 1: test accuracy ...")
    assert without_comparison(3, moved, TEST_SET) == Decision(CHAMPION_ALIAS, "beats champion version 1: test accuracy ...")
    assert without_comparison(3, champion(version=3, description=""), TEST_SET) == Decision(CHAMPION_ALIAS, "the champion")


def test_a_rerun_of_the_same_logged_model_answers_already_registered():
    assert already_registered(1, "the first version registered") == "already registered as version 1: the first version registered"


def test_the_alias_a_version_holds_champion_first_and_none_when_it_holds_none():
    assert alias_held(["challenger", "champion"]) == CHAMPION_ALIAS
    assert alias_held(["challenger"]) == CHALLENGER_ALIAS
    assert alias_held([]) is None  # a challenger that a later challenger replaced
