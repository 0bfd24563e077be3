"""The pure rules that turn a write into new answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthinfo.errors import EditConflict
from healthinfo.health_information.merge import (
    apply_merge_patch,
    bump_field_versions,
    changed_ids,
    desired_from_replacement,
    rebase,
    without_nulls,
)

answers = st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 3) | st.booleans(), max_size=6)


def test_merge_patch_sets_replaces_and_removes() -> None:
    assert apply_merge_patch({"a": 1, "b": 2}, {"a": 5, "b": None, "c": 3}) == {"a": 5, "c": 3}


def test_merge_patch_removing_an_absent_answer_is_harmless() -> None:
    assert apply_merge_patch({"a": 1}, {"z": None}) == {"a": 1}


def test_merge_patch_replaces_lists_whole() -> None:
    assert apply_merge_patch({"a": ["x", "y"]}, {"a": ["z"]}) == {"a": ["z"]}


def test_without_nulls_drops_unanswered_questions() -> None:
    assert without_nulls({"a": None, "b": False, "c": 0}) == {"b": False, "c": 0}


def test_changed_ids_sees_additions_removals_and_changes_sorted() -> None:
    assert changed_ids({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 9, "d": 4}) == ["b", "c", "d"]


def test_changed_ids_tells_false_from_absent() -> None:
    assert changed_ids({}, {"a": False}) == ["a"]


@given(answers, answers)
def test_changed_ids_is_empty_exactly_when_equal(before: dict, after: dict) -> None:
    assert (changed_ids(before, after) == []) == (before == after)


@given(answers, answers)
def test_applying_the_replacement_intent_to_its_base_gives_the_replacement(
    base: dict, new: dict
) -> None:
    assert apply_merge_patch(base, desired_from_replacement(base, new)) == new


def test_rebase_applies_when_touched_questions_did_not_move() -> None:
    result = rebase(
        {"a": 1, "b": 7},
        {"a": 1, "b": 3},
        base_version=2,
        current_version=3,
        desired={"a": 2},
    )
    assert result == {"a": 2, "b": 7}


def test_rebase_refuses_a_touched_question_changed_since_base() -> None:
    with pytest.raises(EditConflict) as caught:
        rebase({"a": 5}, {"a": 3}, base_version=2, current_version=3, desired={"a": 9, "b": 1})
    assert [c.as_dict() for c in caught.value.conflicts] == [{"field": "a", "currentVersion": 3}]
    assert caught.value.current_version == 3


def test_rebase_accepts_the_same_value_someone_else_already_wrote() -> None:
    assert rebase({"a": 9}, {"a": 3}, base_version=2, current_version=3, desired={"a": 9}) == {
        "a": 9
    }


def test_rebase_refuses_removing_a_question_changed_since_base() -> None:
    with pytest.raises(EditConflict):
        rebase({"a": 5}, {"a": 3}, base_version=2, current_version=3, desired={"a": None})


def test_rebase_accepts_removing_what_someone_else_already_removed() -> None:
    assert rebase({}, {"a": 3}, base_version=2, current_version=3, desired={"a": None}) == {}


def test_bump_field_versions_marks_changed_questions_only() -> None:
    assert bump_field_versions({"a": 1, "b": 2}, ["b", "c"], 5) == {"a": 1, "b": 5, "c": 5}
