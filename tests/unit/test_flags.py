"""Feature flags: on, off, and stable percentage rollouts by kit."""

from __future__ import annotations

import pytest

from healthinfo.common.flags import OFF, ON, Rollout, parse_rollout

KITS = [f"KIT-{i}" for i in range(2000)]


@pytest.mark.parametrize(
    ("text", "percent"),
    [("true", 100), ("on", 100), ("false", 0), ("off", 0), ("25%", 25), (" 7% ", 7), (True, 100)],
)
def test_values_parse(text: object, percent: int) -> None:
    assert parse_rollout(text) == Rollout(percent)


@pytest.mark.parametrize("text", ["maybe", "101%", "-1%", "%", "2.5%"])
def test_nonsense_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="percentage"):
        parse_rollout(text)


def test_on_and_off_are_absolute() -> None:
    assert all(ON.enabled_for("f", k) for k in KITS)
    assert not any(OFF.enabled_for("f", k) for k in KITS)


def test_a_percentage_selects_about_that_share_of_kits() -> None:
    share = sum(Rollout(25).enabled_for("strict", k) for k in KITS) / len(KITS)
    assert 0.2 < share < 0.3


def test_the_same_kit_always_gets_the_same_answer() -> None:
    assert [Rollout(50).enabled_for("f", k) for k in KITS] == [
        Rollout(50).enabled_for("f", k) for k in KITS
    ]


def test_raising_the_percentage_only_adds_kits() -> None:
    at_10 = {k for k in KITS if Rollout(10).enabled_for("f", k)}
    at_40 = {k for k in KITS if Rollout(40).enabled_for("f", k)}
    assert at_10 < at_40


def test_flags_pick_kits_independently() -> None:
    first = {k for k in KITS if Rollout(50).enabled_for("a", k)}
    second = {k for k in KITS if Rollout(50).enabled_for("b", k)}
    assert first != second
