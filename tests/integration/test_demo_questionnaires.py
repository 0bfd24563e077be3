"""/demo renders the kit's own questionnaire version, with groups, repetitions and enableWhen.

Two people in two browser contexts (headless Chromium, tests/support/demo.py) on one kit bound
to a questionnaire published through the API: whatever one answers shows or hides questions for
the other without a reload, because the page re-decides enablement on each live event with the
server's rules (questionnaires/conditions.py), which the last test checks case by case.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from healthinfo.questionnaires.model import Questionnaire
from tests.support.demo import browser, claimed_kit, demo_server, open_demo
from tests.support.server import ServerProcess
from tests.support.tokens import auth

__all__ = ["browser", "demo_server"]  # fixtures, used by name

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ADMIN = auth("demo-admin", "admin")


def when(question: str, operator: str, answer: Any) -> dict[str, Any]:
    return {"question": question, "operator": operator, "answer": answer}


def question(item_id: str, text: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "text": text, "type": kind, "required": False, "section": "you"} | extra


def screening(questionnaire_id: str, version: str = "1") -> dict[str, Any]:
    """A display item, nested groups, a chain of conditions, multiple choice, ``!=``, ``any``,
    and a repeating group with a condition inside its rows."""
    return {
        "id": questionnaire_id,
        "version": version,
        "title": "Screening",
        "items": [
            {"id": "intro", "type": "display", "text": "Answer for the person who took the test."},
            {
                "id": "lifestyle",
                "type": "group",
                "text": "Lifestyle",
                "section": "habits",
                "items": [
                    {"id": "smoker", "text": "Do you smoke?", "type": "boolean", "required": True},
                    {
                        "id": "smoking",
                        "type": "group",
                        "text": "Smoking",
                        "enableWhen": [when("smoker", "=", True)],
                        "items": [
                            {
                                "id": "cigarettesPerDay",
                                "text": "How many cigarettes per day?",
                                "type": "integer",
                                "required": True,
                                "minimum": 1,
                                "maximum": 100,
                            },
                            {
                                "id": "triedQuitting",
                                "text": "Have you tried to quit?",
                                "type": "boolean",
                                "required": False,
                                "enableWhen": [when("cigarettesPerDay", ">=", 10)],
                            },
                            {
                                "id": "quitAdvice",
                                "type": "display",
                                "text": "Ask us about support to quit.",
                                "enableWhen": [when("triedQuitting", "=", False)],
                            },
                        ],
                    },
                ],
            },
            question(
                "symptoms",
                "Which symptoms do you have?",
                "multiple-choice",
                options=[
                    {"value": "cough", "label": "Cough"},
                    {"value": "fever", "label": "Fever"},
                    {"value": "rash", "label": "Rash"},
                ],
            ),
            question(
                "coughWeeks",
                "For how many weeks have you coughed?",
                "integer",
                enableWhen=[when("symptoms", "=", "cough")],
            ),
            {
                "id": "noFever",
                "type": "display",
                "text": "Good: no fever.",
                "enableWhen": [when("symptoms", "!=", "fever")],
            },
            question(
                "seeDoctor",
                "Have you seen a doctor?",
                "boolean",
                enableWhen=[when("symptoms", "=", "fever"), when("coughWeeks", ">", 3)],
                enableBehavior="any",
            ),
            {
                "id": "medications",
                "type": "group",
                "text": "Medication",
                "section": "you",
                "repeats": True,
                "maxItems": 2,
                "items": [
                    question("name", "Name of the medicine", "string", required=True),
                    question("prescribed", "Was it prescribed?", "boolean"),
                    question(
                        "prescriber",
                        "Who prescribed it?",
                        "string",
                        enableWhen=[when("prescribed", "=", True)],
                    ),
                ],
            },
        ],
    }


async def publish(server: ServerProcess, definition: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.post("/v1/questionnaires", json=definition, headers=ADMIN)
    assert response.status_code == 201, response.text


async def screening_kit(server: ServerProcess, owner: str, *editors: str) -> str:
    """A kit claimed by ``owner`` and bound (by the claim) to a new screening questionnaire."""
    questionnaire_id = f"screening-{uuid.uuid4().hex[:8]}"
    await publish(server, screening(questionnaire_id))
    claim = {"questionnaire": {"id": questionnaire_id, "version": "1"}}
    return await claimed_kit(server, owner, *editors, claim=claim)


async def two_people(browser: Browser, server: ServerProcess) -> tuple[str, Page, Page]:
    owner, editor = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    kit_id = await screening_kit(server, owner, editor)
    alice = await open_demo(browser, server, kit_id, owner)
    bob = await open_demo(browser, server, kit_id, editor)
    return kit_id, alice, bob


async def saved_answers(server: ServerProcess, kit_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.get(f"/v1/kits/{kit_id}/health-information", headers=ADMIN)
    assert response.status_code == 200, response.text
    answers: dict[str, Any] = response.json()["answers"]
    return answers


async def answer(page: Page, selector: str, value: str) -> None:
    """Type into a field and leave it, which is when the page saves."""
    await page.fill(selector, value)
    await page.press(selector, "Tab")


async def test_the_page_renders_the_version_the_kit_is_bound_to_not_the_newest(
    browser: Browser, demo_server: ServerProcess
) -> None:
    questionnaire_id = f"screening-{uuid.uuid4().hex[:8]}"
    first = screening(questionnaire_id, "1")
    first["items"].append(question("onlyInOne", "Asked in version 1 only", "string"))
    await publish(demo_server, first)
    owner = f"alice-{uuid.uuid4().hex[:6]}"
    claim = {"questionnaire": {"id": questionnaire_id, "version": "1"}}
    kit_id = await claimed_kit(demo_server, owner, claim=claim)
    newer = screening(questionnaire_id, "2")
    newer["items"].append(question("onlyInTwo", "Asked in version 2 only", "string"))
    await publish(demo_server, newer)  # the newest active version is now 2

    page = await open_demo(browser, demo_server, kit_id, owner)

    await expect(page.locator("#questionnaire")).to_have_text(f"{questionnaire_id} v1")
    await expect(page.locator("#q-onlyInOne")).to_be_visible()
    await expect(page.locator("#q-onlyInTwo")).to_have_count(0)
    await expect(page.locator("#q-heightCm")).to_have_count(0)  # not the shipped default either


async def test_display_items_are_text_and_groups_are_nested_fieldsets(
    browser: Browser, demo_server: ServerProcess
) -> None:
    owner = f"alice-{uuid.uuid4().hex[:6]}"
    page = await open_demo(browser, demo_server, await screening_kit(demo_server, owner), owner)

    intro = page.locator("p#row-intro")
    await expect(intro).to_have_text("Answer for the person who took the test.")
    await expect(intro.locator("input, select, textarea")).to_have_count(0)
    lifestyle = page.locator("fieldset#row-lifestyle")
    await expect(lifestyle.locator("> legend")).to_have_text("Lifestyle")
    await expect(lifestyle.locator("#q-smoker")).to_be_visible()
    nested = lifestyle.locator("fieldset#row-smoking")
    await expect(nested.locator("> legend")).to_have_text("Smoking")
    await expect(nested.locator("#q-cigarettesPerDay")).to_have_count(1)
    await expect(nested).to_be_hidden()  # nobody said they smoke yet


async def test_an_answer_in_one_browser_shows_the_question_it_enables_in_the_other(
    browser: Browser, demo_server: ServerProcess
) -> None:
    _, alice, bob = await two_people(browser, demo_server)
    await expect(bob.locator("#q-cigarettesPerDay")).to_be_hidden()

    await alice.select_option("#q-smoker", "true")

    await expect(bob.locator("#q-cigarettesPerDay")).to_be_visible()
    await expect(bob.locator("#version")).to_have_text("1")  # no reload: the live event did it
    await expect(bob.locator("#q-triedQuitting")).to_be_hidden()  # its own condition is not met


async def test_a_disabling_answer_hides_the_whole_chain_for_both_and_removes_its_answers(
    browser: Browser, demo_server: ServerProcess
) -> None:
    kit_id, alice, bob = await two_people(browser, demo_server)
    await alice.select_option("#q-smoker", "true")
    await answer(bob, "#q-cigarettesPerDay", "15")
    await expect(alice.locator("#q-cigarettesPerDay")).to_have_value("15")
    await expect(alice.locator("#q-triedQuitting")).to_be_visible()  # 15 >= 10
    await alice.select_option("#q-triedQuitting", "false")
    await expect(bob.locator("#row-quitAdvice")).to_be_visible()  # the end of the chain

    await alice.select_option("#q-smoker", "false")

    for page in (alice, bob):
        await expect(page.locator("#version")).to_have_text("4")
        for hidden in ("#q-cigarettesPerDay", "#q-triedQuitting", "#row-quitAdvice"):
            await expect(page.locator(hidden)).to_be_hidden()
    assert await saved_answers(demo_server, kit_id) == {"smoker": False}
    await bob.select_option("#q-smoker", "true")
    await expect(alice.locator("#q-cigarettesPerDay")).to_be_visible()
    await expect(alice.locator("#q-cigarettesPerDay")).to_have_value("")  # the answer is gone


async def test_multiple_choice_not_equal_and_any_conditions_follow_the_other_persons_choices(
    browser: Browser, demo_server: ServerProcess
) -> None:
    _, alice, bob = await two_people(browser, demo_server)
    # != holds for an unanswered item (FHIR R4): "no fever" shows before anything is chosen.
    await expect(alice.locator("#row-noFever")).to_be_visible()
    await expect(alice.locator("#q-coughWeeks")).to_be_hidden()
    await expect(alice.locator("#q-seeDoctor")).to_be_hidden()

    await bob.locator("#q-symptoms input[value=cough]").check()
    await expect(alice.locator("#q-coughWeeks")).to_be_visible()  # one selected option matches
    await expect(alice.locator("#q-seeDoctor")).to_be_hidden()  # neither condition holds
    await answer(alice, "#q-coughWeeks", "4")
    await expect(bob.locator("#q-seeDoctor")).to_be_visible()  # any: weeks > 3

    await bob.locator("#q-symptoms input[value=fever]").check()
    await expect(alice.locator("#row-noFever")).to_be_hidden()
    await expect(alice.locator("#q-seeDoctor")).to_be_visible()
    await expect(alice.locator("#q-symptoms input[value=fever]")).to_be_checked()


async def test_a_row_added_in_one_browser_appears_in_the_other_up_to_max_items(
    browser: Browser, demo_server: ServerProcess
) -> None:
    kit_id, alice, bob = await two_people(browser, demo_server)
    await expect(alice.locator("#rows-medications > fieldset")).to_have_count(0)

    await bob.click("#add-medications")
    await answer(bob, "#q-medications-0-name", "Aspirin")
    await expect(alice.locator("#q-medications-0-name")).to_have_value("Aspirin")
    await bob.click("#add-medications")
    await answer(bob, "#q-medications-1-name", "Ibuprofen")
    await expect(alice.locator("#q-medications-1-name")).to_have_value("Ibuprofen")
    for page in (alice, bob):
        await expect(page.locator("#rows-medications > fieldset")).to_have_count(2)
        await expect(page.locator("#add-medications")).to_be_disabled()  # maxItems: 2

    await alice.click("#remove-medications-0")

    await expect(bob.locator("#rows-medications > fieldset")).to_have_count(1)
    await expect(bob.locator("#q-medications-0-name")).to_have_value("Ibuprofen")
    await expect(bob.locator("#add-medications")).to_be_enabled()
    assert await saved_answers(demo_server, kit_id) == {"medications": [{"name": "Ibuprofen"}]}


async def test_a_condition_inside_a_repetition_is_decided_row_by_row(
    browser: Browser, demo_server: ServerProcess
) -> None:
    kit_id, alice, bob = await two_people(browser, demo_server)
    await bob.click("#add-medications")
    await answer(bob, "#q-medications-0-name", "Aspirin")
    await bob.click("#add-medications")
    await answer(bob, "#q-medications-1-name", "Insulin")
    await expect(alice.locator("#q-medications-1-name")).to_have_value("Insulin")

    await alice.select_option("#q-medications-1-prescribed", "true")

    await expect(bob.locator("#q-medications-1-prescriber")).to_be_visible()
    await expect(bob.locator("#q-medications-0-prescriber")).to_be_hidden()
    await answer(bob, "#q-medications-1-prescriber", "Dr Jones")
    await expect(alice.locator("#q-medications-1-prescriber")).to_have_value("Dr Jones")
    await bob.select_option("#q-medications-1-prescribed", "false")
    await expect(alice.locator("#q-medications-1-prescriber")).to_be_hidden()
    assert await saved_answers(demo_server, kit_id) == {
        "medications": [{"name": "Aspirin"}, {"name": "Insulin", "prescribed": False}]
    }


# -- the page's rules are the server's ---------------------------------------------------


def rules(questionnaire_id: str) -> dict[str, Any]:
    """Every operator on every type it fits, both behaviours, groups and rows."""
    choice = [{"value": v, "label": v} for v in ("a", "b", "c")]
    return {
        "id": questionnaire_id,
        "version": "1",
        "title": "Rules",
        "items": [
            question("flag", "flag", "boolean"),
            question("count", "count", "integer"),
            question("amount", "amount", "decimal"),
            question("day", "day", "date"),
            question("word", "word", "string"),
            question("one", "one", "single-choice", options=choice),
            question("many", "many", "multiple-choice", options=choice),
            question(
                "q1",
                "q1",
                "string",
                enableWhen=[when("flag", "!=", True), when("count", ">", 2)],
                enableBehavior="all",
            ),
            question(
                "q2",
                "q2",
                "string",
                enableWhen=[when("amount", "<=", 1.5), when("day", ">=", "2020-01-01")],
                enableBehavior="any",
            ),
            question("q3", "q3", "string", enableWhen=[when("many", "=", "b")]),
            question("q4", "q4", "string", enableWhen=[when("many", "!=", "c")]),
            question("q5", "q5", "string", enableWhen=[when("one", "exists", False)]),
            question("q6", "q6", "integer", enableWhen=[when("q1", "exists", True)]),
            question("q7", "q7", "string", enableWhen=[when("q6", "<", 5)]),  # a chain
            question("q8", "q8", "string", enableWhen=[when("word", "=", "x")]),
            question("q9", "q9", "string", enableWhen=[when("count", "=", 3)]),
            question("q10", "q10", "string", enableWhen=[when("day", "<", "2021-06-01")]),
            {
                "id": "box",
                "type": "group",
                "text": "box",
                "section": "you",
                "enableWhen": [when("one", "=", "a")],
                "items": [
                    question("inBox", "inBox", "boolean"),
                    question("deep", "deep", "string", enableWhen=[when("inBox", "=", False)]),
                ],
            },
            {
                "id": "rows",
                "type": "group",
                "text": "rows",
                "section": "you",
                "repeats": True,
                "enableWhen": [when("amount", "exists", True)],
                "items": [
                    question("r1", "r1", "boolean"),
                    question("r2", "r2", "integer", enableWhen=[when("r1", "=", True)]),
                    question(
                        "r3",
                        "r3",
                        "string",
                        enableWhen=[when("r2", ">", 1), when("flag", "=", False)],
                        enableBehavior="all",
                    ),
                    {
                        "id": "sub",
                        "type": "group",
                        "text": "sub",
                        "enableWhen": [when("r3", "exists", True)],
                        "items": [question("r4", "r4", "string")],
                    },
                ],
            },
        ],
    }


def random_answers(rng: random.Random) -> dict[str, Any]:
    """Answers of the right types (the server stores no others), each item often unanswered."""
    pools: dict[str, list[Any]] = {
        "flag": [True, False],
        "count": [1, 2, 3, 4],
        "amount": [0.5, 1.5, 1, 2.25],
        "day": ["2019-12-31", "2020-01-01", "2021-06-01", "2022-02-02"],
        "word": ["x", "y"],
        "one": ["a", "b", "c"],
        "many": [["a"], ["b"], ["c"], ["a", "b"], ["b", "c"], ["a", "c"]],
        "q1": ["text"],
        "q6": [1, 4, 5, 9],
        "inBox": [True, False],
    }
    answers = {key: rng.choice(pool) for key, pool in pools.items() if rng.random() < 0.6}
    rows = []
    for _ in range(rng.randint(0, 3)):
        row: dict[str, Any] = {}
        if rng.random() < 0.7:
            row["r1"] = rng.choice([True, False])
        if rng.random() < 0.7:
            row["r2"] = rng.choice([0, 1, 2, 5])
        if rng.random() < 0.5:
            row["r3"] = "t"
        rows.append(row)
    if rows:
        answers["rows"] = rows
    return answers


def server_decision(q: Questionnaire, answers: dict[str, Any]) -> dict[str, Any]:
    off = q.plan.disabled(answers)
    rows = [
        sorted(q.plan.disabled_in_row("rows", row, answers, off)) for row in answers.get("rows", [])
    ]
    return {"off": sorted(off), "rows": rows}


PAGE_DECISION = """([definition, cases]) => {
  const p = compilePlan(definition.items);
  return cases.map((answers) => {
    const decided = enablement(p, answers, { rows: answers.rows || [] });
    return { off: [...decided.off].sort(), rows: decided.rows.rows.map((s) => [...s].sort()) };
  });
}"""


async def test_the_page_decides_what_is_enabled_exactly_as_the_server_does(
    browser: Browser, demo_server: ServerProcess
) -> None:
    definition = rules(f"rules-{uuid.uuid4().hex[:8]}")
    q = Questionnaire.from_dict(definition)
    rng = random.Random(17)
    cases = [random_answers(rng) for _ in range(400)]
    owner = f"alice-{uuid.uuid4().hex[:6]}"
    page = await open_demo(browser, demo_server, await claimed_kit(demo_server, owner), owner)

    decided = await page.evaluate(PAGE_DECISION, [q.to_public_dict(), cases])

    expected = [server_decision(q, answers) for answers in cases]
    mismatches = [
        (answers, mine, theirs)
        for answers, mine, theirs in zip(cases, decided, expected, strict=True)
        if mine != theirs
    ]
    assert mismatches == []
    # The cases reach every item both ways, so the comparison says something about each.
    disabled_somewhere = {item for e in expected for item in e["off"]}
    enabled_somewhere = {item for e in expected for item in q.plan.nodes if item not in e["off"]}
    conditional = {"q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9", "q10", "box", "rows"}
    assert conditional <= disabled_somewhere & enabled_somewhere
    row_off = {item for e in expected for row in e["rows"] for item in row}
    assert {"r2", "r3", "sub", "r4"} <= row_off
