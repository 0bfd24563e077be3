"""Validating one answer set against a large questionnaire: p50/p95/p99 in milliseconds.

``python -m bench.questionnaire_validation`` generates a definition of 500 items (integers,
booleans, single and multiple choice, one repeating group of 10 children) with 200 conditions
(chains, multiple-choice conditions, conditions inside the repeating group), publishes it the
way the service does (parse, check, compile once), then times what every write does with it:
validate the submitted answers, remove answers to disabled items, check required ones.

Issue #17's target: under 5 ms per answer set on this machine. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from healthinfo.questionnaires.model import Questionnaire
from healthinfo.questionnaires.validation import (
    missing_required,
    remove_disabled,
    validate_answers,
)

OPTIONS = [{"value": f"o{n}", "label": f"Option {n}"} for n in range(6)]


def _item(index: int, **extra: Any) -> dict[str, Any]:
    kinds = ("integer", "boolean", "single-choice", "multiple-choice")
    kind = kinds[index % 4]
    item: dict[str, Any] = {
        "id": f"q{index}",
        "text": f"Question {index}",
        "type": kind,
        "required": index % 7 == 0,
        "section": f"s{index // 50}",
    }
    if kind == "integer":
        item |= {"minimum": 0, "maximum": 1000}
    if kind in ("single-choice", "multiple-choice"):
        item["options"] = OPTIONS
    return item | extra


def _condition(target: int) -> dict[str, Any]:
    kind = target % 4
    if kind == 0:
        return {"question": f"q{target}", "operator": ">", "answer": 10}
    if kind == 1:
        return {"question": f"q{target}", "operator": "=", "answer": True}
    if kind == 2:
        return {"question": f"q{target}", "operator": "!=", "answer": "o5"}
    return {"question": f"q{target}", "operator": "=", "answer": "o1"}


def definition() -> dict[str, Any]:
    """490 top-level items (190 conditional) and a repeating group of 10 (10 conditional)."""
    items = []
    for index in range(490):
        if index >= 299:  # q299..q489 depend on an earlier item: chains up to several deep
            target = index - 1 if index % 3 == 0 else index - 150
            items.append(_item(index, enableWhen=[_condition(target)]))
        else:
            items.append(_item(index))
    children = []
    for index in range(490, 500):
        extra: dict[str, Any] = {"required": False}
        if index > 490:
            extra["enableWhen"] = [{"question": "r490", "operator": "exists", "answer": True}]
        child = _item(index, **extra) | {"id": f"r{index}"}
        del child["section"]
        children.append(child)
    items.append(
        {
            "id": "rows",
            "text": "Rows",
            "type": "group",
            "section": "g",
            "repeats": True,
            "maxItems": 50,
            "items": children,
        }
    )
    return {"id": "bench", "version": "1", "title": "Benchmark", "items": items}


def _answer(item: dict[str, Any]) -> Any:
    return {"integer": 20, "boolean": True, "single-choice": "o1", "multiple-choice": ["o1", "o2"]}[
        item["type"]
    ]


def answer_set(raw: dict[str, Any]) -> dict[str, Any]:
    """An answer to every top-level question, and 20 rows of the repeating group."""
    answers = {item["id"]: _answer(item) for item in raw["items"] if item["type"] != "group"}
    children = raw["items"][-1]["items"]
    answers["rows"] = [{child["id"]: _answer(child) for child in children} for _ in range(20)]
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    raw = definition()
    started = time.perf_counter()
    questionnaire = Questionnaire.from_dict(raw)
    compile_ms = (time.perf_counter() - started) * 1000
    conditions = sum(1 for _ in _conditions(raw["items"]))
    answers = answer_set(raw)
    timings = []
    for _ in range(args.iterations):
        started = time.perf_counter()
        assert validate_answers(questionnaire, answers) == []
        kept, errors = remove_disabled(questionnaire, answers, written=list(answers))
        missing_required(questionnaire, kept)
        timings.append((time.perf_counter() - started) * 1000)
    quantiles = statistics.quantiles(timings, n=100)
    print(
        f"items={len(list(_all(raw['items'])))} conditions={conditions} "
        f"answers={len(answers)} (rows: {len(answers['rows'])}) disabled-errors={len(errors)}"
    )
    print(f"publish (parse + check + compile): {compile_ms:.2f} ms")
    print(
        f"validate an answer set: p50 {quantiles[49]:.3f} ms  p95 {quantiles[94]:.3f} ms  "
        f"p99 {quantiles[98]:.3f} ms  ({args.iterations} iterations)"
    )


def _all(items: list[dict[str, Any]]) -> Any:
    for item in items:
        yield item
        yield from _all(item.get("items", []))


def _conditions(items: list[dict[str, Any]]) -> Any:
    for item in _all(items):
        yield from item.get("enableWhen", [])


if __name__ == "__main__":
    main()
