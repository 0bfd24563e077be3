"""Properties of removing disabled answers, on generated chains of conditions (Hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from healthinfo.questionnaires.model import Questionnaire
from healthinfo.questionnaires.validation import remove_disabled

SIZE = 12
OPERATIONS = [("=", True), ("!=", True), ("exists", True), ("=", False), ("exists", False)]


@st.composite
def chained(draw: st.DrawFn) -> Questionnaire:
    """Booleans where item n may depend on any earlier item, with = / != / exists."""
    items: list[dict[str, Any]] = []
    for index in range(SIZE):
        item: dict[str, Any] = {
            "id": f"b{index}",
            "text": f"b{index}",
            "type": "boolean",
            "required": False,
            "section": "s",
        }
        if index and draw(st.booleans()):
            targets = draw(st.lists(st.integers(0, index - 1), min_size=1, max_size=2))
            conditions = [
                {"question": f"b{t}", "operator": op, "answer": answer}
                for t in targets
                for op, answer in [
                    draw(
                        st.sampled_from([("=", True), ("!=", True), ("exists", True), ("=", False)])
                    )
                ]
            ]
            item["enableWhen"] = conditions
            if len(conditions) > 1:
                item["enableBehavior"] = draw(st.sampled_from(["all", "any"]))
        items.append(item)
    return Questionnaire.from_dict({"id": "p", "version": "1", "title": "P", "items": items})


answer_sets = st.dictionaries(st.sampled_from([f"b{i}" for i in range(SIZE)]), st.booleans())


@settings(max_examples=300, deadline=None)
@given(chained(), answer_sets)
def test_removing_disabled_answers_is_a_fixed_point(q: Questionnaire, answers: dict) -> None:
    kept, _ = remove_disabled(q, answers, written=())
    again, errors = remove_disabled(q, kept, written=list(kept))
    assert again == kept
    assert errors == []


@settings(max_examples=300, deadline=None)
@given(chained(), answer_sets)
def test_only_disabled_answers_are_removed_and_enablement_does_not_move(
    q: Questionnaire, answers: dict
) -> None:
    """A disabled item's answer already counts as absent, so removing it changes nothing."""
    kept, _ = remove_disabled(q, answers, written=())
    assert set(answers) - set(kept) == set(answers) & q.plan.disabled(answers)
    assert q.plan.disabled(kept) == q.plan.disabled(answers)
