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


# -- the newer constructs: open choices, option kinds, dateTime, time, readOnly ----------------


def constructs(questionnaire_id: str) -> dict[str, Any]:
    """Every kind of option, open choices, dateTime and time, a read-only item, and conditions
    on each (a dateTime one in another zone than the answers)."""
    return {
        "id": questionnaire_id,
        "version": "1",
        "title": "Constructs",
        "items": [
            question(
                "mood",
                "How do you feel?",
                "single-choice",
                openChoice=True,
                options=[{"value": "good", "label": "Good"}, {"value": "bad", "label": "Bad"}],
            ),
            question(
                "hobbies",
                "Your hobbies",
                "multiple-choice",
                openChoice=True,
                options=[{"value": "reading"}, {"value": "walking"}],
            ),
            question("score", "Score", "single-choice", options=[{"value": v} for v in (1, 2, 3)]),
            question("scores", "Scores", "multiple-choice", options=[{"value": 10}, {"value": 20}]),
            question("onset", "When did it start?", "dateTime"),
            question("wakeUp", "When do you wake up?", "time"),
            question("computed", "Computed elsewhere", "string", readOnly=True),
            {
                "id": "tiredNote",
                "type": "display",
                "text": "Rest well.",
                "enableWhen": [when("mood", "=", "tired")],
            },
            {
                "id": "topScore",
                "type": "display",
                "text": "The top score.",
                "enableWhen": [when("score", "=", 3)],
            },
            {
                "id": "lateOnset",
                "type": "display",
                "text": "It started after 09:00 UTC.",
                "enableWhen": [when("onset", ">=", "2024-01-02T10:00:00+01:00")],
            },
            {
                "id": "lateRiser",
                "type": "display",
                "text": "You wake up after noon.",
                "enableWhen": [when("wakeUp", ">", "12:00:00")],
            },
        ],
    }


async def constructs_kit(
    browser: Browser, server: ServerProcess, alice_zone: str | None = None
) -> tuple[str, str, Page, Page]:
    """A kit bound to a new ``constructs`` questionnaire, open for its owner and an editor
    (the editor's browser in New York)."""
    questionnaire_id = f"constructs-{uuid.uuid4().hex[:8]}"
    await publish(server, constructs(questionnaire_id))
    owner, editor = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    claim = {"questionnaire": {"id": questionnaire_id, "version": "1"}}
    kit_id = await claimed_kit(server, owner, editor, claim=claim)
    alice = await open_demo(browser, server, kit_id, owner, timezone=alice_zone)
    bob = await open_demo(browser, server, kit_id, editor, timezone="America/New_York")
    return kit_id, owner, alice, bob


async def write(server: ServerProcess, kit_id: str, user: str, answers: dict[str, Any]) -> None:
    """Answers written through the API (not the page), as another client would."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.patch(
            f"/v1/kits/{kit_id}/health-information",
            json={"answers": answers},
            headers=auth(user) | {"Content-Type": "application/merge-patch+json"},
        )
    assert response.status_code in (200, 201), response.text


async def test_options_without_labels_show_their_values_and_integer_options_stay_integers(
    browser: Browser, demo_server: ServerProcess
) -> None:
    kit_id, _, alice, bob = await constructs_kit(browser, demo_server)
    await expect(alice.locator("#q-score option")).to_have_text(["—", "1", "2", "3"])
    await expect(alice.locator("#q-hobbies label")).to_have_text([" reading", " walking"])
    await expect(bob.locator("#row-topScore")).to_be_hidden()

    await alice.select_option("#q-score", label="3")
    await alice.locator("#q-scores input[value='20']").check()

    await expect(bob.locator("#q-scores input[value='20']")).to_be_checked()
    await expect(bob.locator("#q-score")).to_have_value("3")
    await expect(bob.locator("#row-topScore")).to_be_visible()  # score = 3, an integer
    assert await saved_answers(demo_server, kit_id) == {"score": 3, "scores": [20]}


async def test_an_open_choice_takes_free_text_which_the_other_person_sees(
    browser: Browser, demo_server: ServerProcess
) -> None:
    kit_id, _, alice, bob = await constructs_kit(browser, demo_server)
    await expect(alice.locator("#q-mood input.other")).to_be_hidden()

    await alice.select_option("#q-mood select", label="Other…")
    await answer(alice, "#q-mood input.other", "tired")

    await expect(bob.locator("#q-mood select")).to_have_value("\u0000other")
    await expect(bob.locator("#q-mood input.other")).to_have_value("tired")
    await expect(bob.locator("#row-tiredNote")).to_be_visible()  # a condition on free text
    await bob.select_option("#q-mood select", label="Good")
    await expect(alice.locator("#q-mood input.other")).to_be_hidden()
    await expect(alice.locator("#row-tiredNote")).to_be_hidden()

    await alice.locator("#q-hobbies input[value=reading]").check()
    await expect(alice.locator("#version")).to_have_text("3")  # saved: the next edit builds on it
    await answer(alice, "#q-hobbies input.other", "chess")
    free = bob.locator("#q-hobbies label.free input")
    await expect(free).to_be_checked()
    await expect(bob.locator("#q-hobbies label.free")).to_have_text(" chess")
    assert await saved_answers(demo_server, kit_id) == {
        "mood": "good",
        "hobbies": ["reading", "chess"],
    }
    await free.click()  # (not uncheck(): the box goes with the answer, before it could be read)
    await expect(alice.locator("#q-hobbies label.free")).to_have_count(0)
    assert (await saved_answers(demo_server, kit_id))["hobbies"] == ["reading"]


async def test_date_times_keep_their_zone_and_times_their_seconds_and_compare_as_instants(
    browser: Browser, demo_server: ServerProcess
) -> None:
    kit_id, owner, alice, bob = await constructs_kit(browser, demo_server, "Europe/Paris")
    await expect(alice.locator("#q-onset input")).to_have_attribute("type", "datetime-local")
    await expect(alice.locator("#q-onset .zone")).to_have_text("UTC+01:00")  # Paris in winter
    await expect(alice.locator("#q-wakeUp")).to_have_attribute("type", "time")

    await answer(alice, "#q-onset input", "2024-01-02T10:30:15")
    await answer(alice, "#q-wakeUp", "13:05")

    # Bob, in New York, sees the time as written, in the zone it was written in.
    await expect(bob.locator("#q-onset input")).to_have_value("2024-01-02T10:30:15")
    await expect(bob.locator("#q-onset .zone")).to_have_text("UTC+01:00")
    await expect(bob.locator("#row-lateOnset")).to_be_visible()
    await expect(bob.locator("#row-lateRiser")).to_be_visible()
    assert await saved_answers(demo_server, kit_id) == {
        "onset": "2024-01-02T10:30:15+01:00",
        "wakeUp": "13:05:00",
    }
    # 09:30Z is after 10:00+01:00 (09:00Z), though its text sorts before it.
    await write(demo_server, kit_id, owner, {"onset": "2024-01-02T09:30:00Z"})
    await expect(bob.locator("#q-onset .zone")).to_have_text("UTC")
    await expect(bob.locator("#row-lateOnset")).to_be_visible()
    await write(demo_server, kit_id, owner, {"onset": "2024-01-02T03:59:59-05:00"})
    await expect(alice.locator("#row-lateOnset")).to_be_hidden()  # 08:59:59Z

    await answer(bob, "#q-onset input", "2024-01-02T04:00:00")  # kept in the answer's zone
    await expect(alice.locator("#row-lateOnset")).to_be_visible()
    assert (await saved_answers(demo_server, kit_id))["onset"] == "2024-01-02T04:00:00-05:00"


async def test_a_read_only_item_is_shown_to_everyone_and_edited_by_no_one(
    browser: Browser, demo_server: ServerProcess
) -> None:
    kit_id, owner, alice, bob = await constructs_kit(browser, demo_server)
    await write(demo_server, kit_id, owner, {"computed": "BMI 22.4"})

    for page in (alice, bob):
        await expect(page.locator("#q-computed")).to_have_value("BMI 22.4")
        await expect(page.locator("#q-computed")).to_be_disabled()
    await alice.select_option("#q-score", label="1")  # a save re-enables the other controls
    await expect(bob.locator("#q-score")).to_have_value("1")
    for page in (alice, bob):
        await expect(page.locator("#q-score")).to_be_enabled()
        await expect(page.locator("#q-computed")).to_be_disabled()
    assert await saved_answers(demo_server, kit_id) == {"computed": "BMI 22.4", "score": 1}


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
            question("at", "at", "dateTime"),
            question("clock", "clock", "time"),
            question("level", "level", "single-choice", options=[{"value": 1}, {"value": 2}]),
            question("open", "open", "multiple-choice", options=choice, openChoice=True),
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
            question(
                "q11", "q11", "string", enableWhen=[when("at", ">=", "2024-01-02T10:00:00+01:00")]
            ),
            question("q12", "q12", "string", enableWhen=[when("at", "=", "2024-01-02T09:00:00Z")]),
            question("q13", "q13", "string", enableWhen=[when("clock", "<", "12:00:00.5")]),
            question("q14", "q14", "string", enableWhen=[when("level", "=", 2)]),
            question("q15", "q15", "string", enableWhen=[when("open", "=", "free")]),
            question("q16", "q16", "string", enableWhen=[when("clock", "=", "12:00:00")]),
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
        # one instant in several zones, and instants whose text sorts the other way
        "at": [
            "2024-01-02T09:00:00Z",
            "2024-01-02T10:00:00+01:00",
            "2024-01-02T04:00:00-05:00",
            "2024-01-02T09:30:00Z",
            "2024-01-02T10:59:59.999999+02:00",
            "2024-01-02T08:59:59.5-00:30",
            "0099-12-31T23:59:59Z",
        ],
        "clock": ["12:00:00", "12:00:00.000", "12:00:00.4", "12:00:00.500001", "09:15:00"],
        "level": [1, 2],
        "open": [["a"], ["free"], ["b", "free"], ["other text"]],
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
    conditional = {f"q{n}" for n in range(1, 17)} | {"box", "rows"}
    assert conditional <= disabled_somewhere & enabled_somewhere
    row_off = {item for e in expected for row in e["rows"] for item in row}
    assert {"r2", "r3", "sub", "r4"} <= row_off
