"""The champion policy: which alias a newly registered version earns, and the sentence that says why.

Plain functions of what the registry holds (the candidate's test accuracy, the current champion and
its evaluation, or their absence); tracking reads them from MLflow, asks MLflow's validation whether
the candidate beats the champion, and writes the decision back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

CHAMPION_ALIAS, CHALLENGER_ALIAS = "champion", "challenger"


@dataclasses.dataclass(frozen=True)
class Champion:
    """The version that holds the champion alias, as the registry has it."""

    version: int
    description: str  # "champion: <why>" where this pipeline made it champion
    test_set: str | None  # the digest of the test set it was evaluated on (its `test_set` tag), None if not recorded
    accuracy: float | None  # the test accuracy of its own evaluation; None if it has none (an alias set by hand, a run deleted since)


@dataclasses.dataclass(frozen=True)
class Decision:
    """The alias a new version gets and why (its description and `decision` tag); where it takes
    the champion alias from another version, that version and its description from then on."""

    alias: str
    why: str
    former_champion: int | None = None
    former_champion_description: str | None = None


def required_gain(n_images: int) -> float:
    """How much more test accuracy beats the champion: one image more right out of `n_images`,
    as a threshold half an image above it, so that a tie does not pass and one image does."""
    return 0.5 / n_images


def without_comparison(version: int, champion: Champion | None, test_set: str) -> Decision | None:
    """The decision for `version` where its evaluation is not compared with the champion's: none
    yet, the same version, a champion with no evaluation of its own, or one tested on another test
    set (`test_set`, a digest of its files). None where the two are compared: see by_comparison."""
    if champion is None:
        return Decision(CHAMPION_ALIAS, "the first version registered")
    if champion.version == version:  # an earlier attempt moved the alias here and stopped before the decision tag
        return Decision(CHAMPION_ALIAS, champion.description.removeprefix(f"{CHAMPION_ALIAS}: ") or "the champion")
    if champion.accuracy is None:
        return Decision(
            CHALLENGER_ALIAS,
            (
                f"not compared with champion version {champion.version}: it has no evaluation of its own to compare "
                "with (an alias set by hand?); move `champion` by hand to the version you trust"
            ),
        )
    if champion.test_set != test_set:
        return Decision(
            CHALLENGER_ALIAS,
            (
                f"not compared with champion version {champion.version}: it was tested on another "
                f"test set ({'unknown' if champion.test_set is None else champion.test_set}, this one {test_set})"
            ),
        )
    return None


def by_comparison(version: int, champion: Champion, accuracy: float, n_images: int, beats: bool) -> Decision:
    """The decision for `version`, of test `accuracy` on the champion's `n_images` test images,
    where `beats` says whether it beats the champion's accuracy by required_gain (which MLflow's
    validation of the two evaluations answers); a tie or a worse score keeps the champion."""
    ours, theirs = accuracy, champion.accuracy
    if beats:
        return Decision(
            CHAMPION_ALIAS,
            f"beats champion version {champion.version}: test accuracy {ours:.4%} against {theirs:.4%} on the same {n_images} images",
            former_champion=champion.version,
            former_champion_description=f"was champion until version {version} beat it ({ours:.4%} against {theirs:.4%})",
        )
    return Decision(
        CHALLENGER_ALIAS,
        (
            f"does not beat champion version {champion.version}: test accuracy {ours:.4%} against "
            f"{theirs:.4%} on the same {n_images} images (a tie keeps the champion)"
        ),
    )


def alias_held(aliases: Collection[str]) -> str | None:
    """The alias a version holds now: champion before any other; None if it holds none (a
    challenger that a later challenger replaced)."""
    return CHAMPION_ALIAS if CHAMPION_ALIAS in aliases else next(iter(aliases), None)


def already_registered(version: int, decision: str) -> str:
    """What a rerun of the same evaluation answers: the version registered for it, and its decision."""
    return f"already registered as version {version}: {decision}"
