"""Model-based test: random sequences of API calls, each predicted by a small model of the rules.

A Hypothesis ``RuleBasedStateMachine`` drives the HTTP API (in process, through
``httpx.ASGITransport``) with puts, patches (with and without ``baseVersion`` / ``If-Match``,
both media types), submits, amendments, erasures, claims, member changes, idempotent replays and
reads, by four users and an admin on two fresh kits per example. ``KitModel`` — pure Python
written from the contract, docs/api-notes.md and docs/architecture.md (the code was read only
where they are silent, e.g. that an auto-claim rolls back with a refused write, and that an
erasure shreds stored idempotent answers, docs/security.md) — predicts every status code,
problem code and resulting state:

* who may do what (owner, editor, viewer, admin; a stranger gets 404, a role without the right
  403; auto-claim on the first write by a non-admin to a kit without answers; the claim rolls
  back with a refused write; an ownerless kit holding answers is not claimed by naming it);
* a version grows by exactly 1 per accepted change; a write that changes nothing creates none;
* submitted (and amended) data is immutable: every write is 409 ``already-submitted``;
* ``If-Match`` is strong and strict (412 with ``currentVersion``); ``baseVersion`` conflicts are
  per question (409 ``edit-conflict`` listing ``{field, currentVersion}``), newer than current is
  422; the same ``Idempotency-Key`` replays the stored answer, with another body it is 422.

Every response is compared with the prediction (status, problem code, representation, ETag,
conflicts), and at the end of each example the whole state of both kits (data, history without
gaps, members) is read back as the admin and compared. Any divergence fails and Hypothesis
shrinks it to a minimal sequence of calls.

The app is built once per test on a private event loop (the session loop belongs to
pytest-asyncio); every example gets fresh kit ids, so examples cannot see each other's data.
Default size: 25 examples × 20 steps on SQLite and on PostgreSQL + Redis, derandomized (the
same sequences every run). ``HEALTHINFO_TEST_FULL=1``: 300 examples × 40 steps, random.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.support.answers import COMPLETE
from tests.support.tokens import auth

FULL = os.environ.get("HEALTHINFO_TEST_FULL") == "1"
EXAMPLES = 300 if FULL else 25
STEPS = 40 if FULL else 20

ADMIN = "mb-admin"
USERS = ("mb-ann", "mb-ben", "mb-cat", "mb-dan")
KITS = 2
MERGE_PATCH = "application/merge-patch+json"
ABSENT = object()

# -- answers: a small domain, so writes collide, repeat and conflict ---------------------------

REQUIRED = tuple(sorted(COMPLETE))  # every key of COMPLETE is a required question
VALUES: dict[str, list[Any]] = {
    "heightCm": [150, 160, 999],  # 999 breaks the questionnaire's maximum (272)
    "weightKg": [61.5, 70],
    "smokingStatus": ["never", "former", "sometimes"],  # "sometimes" is no option
    "vaping": [True, False],
    "additionalNotes": ["a note", "another note"],
    "notAQuestion": [1],  # unknown question id
}
INVALID = {("heightCm", 999), ("smokingStatus", "sometimes"), ("notAQuestion", 1)}
KNOWN = frozenset(VALUES) - {"notAQuestion"} | frozenset(COMPLETE)


def answer_sets(*, allow_null: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Answer objects over VALUES: complete (submittable), partial, or with one invalid answer.

    With ``allow_null``, answers may be ``null``: "no answer" in a PUT, "remove" in a PATCH,
    where removing an unknown question id is invalid too.
    """
    options = {
        key: st.sampled_from(
            [v for v in values if (key, v) not in INVALID] + ([None] if allow_null else [])
        )
        for key, values in VALUES.items()
        if key != "notAQuestion"
    }
    partial = st.fixed_dictionaries({}, optional=options)
    complete = partial.map(lambda extra: {**COMPLETE, **extra})
    invalid_pairs = sorted(INVALID, key=repr) + ([("notAQuestion", None)] if allow_null else [])
    invalid = st.tuples(partial, st.sampled_from(invalid_pairs)).map(
        lambda pair: {**pair[0], pair[1][0]: pair[1][1]}
    )
    return st.one_of(complete, partial, invalid)


def is_invalid(key: str, value: Any) -> bool:
    return (key, value) in INVALID or key not in KNOWN


def changed_ids(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k, ABSENT) != after.get(k, ABSENT))


def merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = dict(current)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


# -- the model ----------------------------------------------------------------------------------

GRANTS = {
    "owner": {"read", "write", "list-members", "manage-members", "erase"},
    "editor": {"read", "write", "list-members"},
    "viewer": {"read", "list-members"},
    "admin": {"read", "write", "list-members", "manage-members", "erase", "amend"},
}
FINAL = ("submitted", "amended")


@dataclass(frozen=True)
class Expect:
    """The predicted answer: status, problem code, and for 412/409 the members to compare."""

    status: int
    code: str | None = None
    current_version: int | None = None
    conflicts: list[dict[str, Any]] | None = None


@dataclass
class Revision:
    version: int
    answers: dict[str, Any]
    status: str
    by: str
    changed: list[str]


@dataclass
class KitModel:
    owner: str | None = None
    members: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Any] | None = None  # None: nothing saved
    status: str = "in-progress"
    field_versions: dict[str, int] = field(default_factory=dict)
    history: list[Revision] = field(default_factory=list)

    @property
    def version(self) -> int | None:
        return self.history[-1].version if self.answers is not None else None

    @property
    def claimable_by_name(self) -> bool:
        """No owner and no answers: naming the kit claims it (with answers: a claim code)."""
        return self.owner is None and self.answers is None

    @property
    def updated_by(self) -> str | None:
        return self.history[-1].by if self.history else None

    def roles(self, actor: str) -> set[str]:
        roles = {"admin"} if actor == ADMIN else set()
        if self.owner is not None and self.owner == actor:
            roles.add("owner")
        elif actor in self.members:
            roles.add(self.members[actor])
        return roles

    def refusal(self, actor: str, permission: str) -> Expect | None:
        roles = self.roles(actor)
        if not roles:
            return Expect(404, "not-found")
        if not any(permission in GRANTS[role] for role in roles):
            return Expect(403, "forbidden")
        return None

    def claimed_by(self, actor: str) -> KitModel:
        """The kit after ``actor`` claims it (a member who claims stops being a member)."""
        after = copy.deepcopy(self)
        after.owner = actor
        after.members.pop(actor, None)
        return after

    def committed(self, actor: str, answers: dict[str, Any], status: str) -> KitModel:
        """A new version: exactly one more than the current one."""
        after = copy.deepcopy(self)
        before = self.answers or {}
        changed = changed_ids(before, answers)
        version = (self.version or 0) + 1
        after.answers = dict(answers)
        after.status = status
        after.field_versions.update(dict.fromkeys(changed, version))
        after.history.append(Revision(version, dict(answers), status, actor, changed))
        return after


def if_match_ok(header: str, version: int | None) -> bool:
    if header == "*":
        return version is not None
    return version is not None and header == f'"{version}"'


def predict_write(
    kit: KitModel,
    actor: str,
    *,
    method: str,
    body: dict[str, Any],
    if_match: str | None,
    if_none_match: str | None = None,
) -> tuple[Expect, KitModel]:
    """PUT, PATCH and POST …/submit; returns the prediction and the kit afterwards."""
    # Auto-claim happens inside the write's transaction: it sticks only if the write commits.
    auto_claims = kit.claimable_by_name and actor != ADMIN
    after = kit.claimed_by(actor) if auto_claims else copy.deepcopy(kit)
    if refused := after.refusal(actor, "write"):
        return refused, kit
    if after.answers is not None and after.status in FINAL:
        return Expect(409, "already-submitted"), kit
    version = after.version
    if if_match is not None and not if_match_ok(if_match, version):
        return Expect(412, "version-conflict", current_version=version), kit
    if if_none_match is not None and version is not None:
        return Expect(412, "version-conflict", current_version=version), kit
    answers: dict[str, Any] = body.get("answers", {})
    base = body.get("baseVersion")
    incoming = {k: v for k, v in answers.items() if v is not None}
    invalid = [k for k, v in incoming.items() if is_invalid(k, v)]
    if method == "PATCH":
        invalid += [k for k, v in answers.items() if v is None and k not in KNOWN]
    if invalid or (base is not None and base > (version or 0)):
        return Expect(422, "validation-failed"), kit
    current = after.answers
    submit = method == "SUBMIT" or bool(body.get("submitted"))
    if method == "SUBMIT":
        if current is None:
            return Expect(404, "not-found"), kit
        new = dict(current)
    elif method == "PUT":
        if base is None or current is None:
            new = incoming
        else:
            base_answers = {} if base == 0 else after.history[base - 1].answers
            desired = {k: incoming.get(k) for k in changed_ids(base_answers, incoming)}
            conflict = rebase_conflict(after, base, desired)
            if conflict:
                return conflict, kit
            new = merge(current, desired)
    else:  # PATCH
        if base is None or current is None:
            new = merge(current or {}, answers)
        else:
            conflict = rebase_conflict(after, base, answers)
            if conflict:
                return conflict, kit
            new = merge(current, answers)
    if current is not None and not changed_ids(current, new) and not submit:
        return Expect(200), after  # no new version; an auto-claim still commits
    if submit and any(key not in new for key in REQUIRED):
        return Expect(422, "validation-failed"), kit
    status = 201 if method == "PUT" and current is None else 200
    return Expect(status), after.committed(actor, new, "submitted" if submit else "in-progress")


def rebase_conflict(kit: KitModel, base: int, desired: dict[str, Any]) -> Expect | None:
    current = kit.answers or {}
    conflicts = [
        {"field": key, "currentVersion": kit.field_versions[key]}
        for key in sorted(desired)
        if kit.field_versions.get(key, 0) > base
        and current.get(key, ABSENT) != (ABSENT if desired[key] is None else desired[key])
    ]
    if not conflicts:
        return None
    return Expect(409, "edit-conflict", current_version=kit.version, conflicts=conflicts)


def predict_amend(
    kit: KitModel, actor: str, patch: dict[str, Any], if_match: str | None
) -> tuple[Expect, KitModel]:
    if refused := kit.refusal(actor, "amend"):
        return refused, kit
    if kit.answers is None:
        return Expect(404, "not-found"), kit
    if kit.status not in FINAL:
        return Expect(409, "not-submitted"), kit
    if if_match is not None and not if_match_ok(if_match, kit.version):
        return Expect(412, "version-conflict", current_version=kit.version), kit
    incoming = {k: v for k, v in patch.items() if v is not None}
    removals = [k for k, v in patch.items() if v is None]
    if any(is_invalid(k, v) for k, v in incoming.items()) or any(k not in KNOWN for k in removals):
        return Expect(422, "validation-failed"), kit
    new = merge(kit.answers, patch)
    if not changed_ids(kit.answers, new):
        return Expect(200), kit
    if any(key not in new for key in REQUIRED):
        return Expect(422, "validation-failed"), kit
    return Expect(200), kit.committed(actor, new, "amended")


# -- running the app on a private event loop ---------------------------------------------------


class Harness:
    """One app, in its lifespan, on an event loop of its own; calls are synchronous."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = create_app(settings)
        self._lifespan: AbstractAsyncContextManager[Any] = self.app.router.lifespan_context(
            self.app
        )
        self.loop.run_until_complete(self._lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self.app, client=("203.0.113.9", 50000))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self.calls = 0
        self.outcomes: Counter[str] = Counter()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.calls += 1
        response = self.loop.run_until_complete(self.client.request(method, url, **kwargs))
        code = response.json().get("code", "") if response.status_code >= 400 else ""
        self.outcomes[f"{response.status_code} {code}".strip()] += 1
        return response

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.client.aclose())
            self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        finally:
            self.loop.close()


# -- the state machine ---------------------------------------------------------------------------

# Weighted towards the arranged owner and editor, so most calls get past access control.
actors = st.sampled_from((USERS[0], USERS[0], USERS[1], USERS[1], USERS[2], USERS[3], ADMIN))
users = st.sampled_from(USERS)
kit_indexes = st.integers(0, KITS - 1)
# What to send as If-Match: nothing, the current version, a stale or future one, *, a weak tag.
IF_MATCH_KINDS = ("none", "none", "current", "stale", "next", "star", "weak")
# What to send as baseVersion: nothing, the current version, an older one, 0, a future one.
BASE_KINDS = ("none", "none", "current", "older", "zero", "future")


@dataclass
class KeyedWrite:
    """The last write sent with an Idempotency-Key, and what it answered."""

    method: str
    index: int
    actor: str
    body: dict[str, Any]
    headers: dict[str, str]
    content_type: str
    response: httpx.Response
    shredded: bool = False  # the kit was erased since: its stored answer is gone


class HealthInformationMachine(RuleBasedStateMachine):
    harness: ClassVar[Harness]

    def __init__(self) -> None:
        super().__init__()
        run = uuid.uuid4().hex[:10]
        self.kit_ids = [f"MB-{run}-{i}" for i in range(KITS)]
        self.kits = [KitModel() for _ in range(KITS)]
        self.keyed: KeyedWrite | None = None

    @initialize(answers=answer_sets(allow_null=False))
    def arrange(self, answers: dict[str, Any]) -> None:
        """Kit 0: ann's, with ben as editor and cat as viewer, some answers saved (dan is a
        stranger). Kit 1 stays unclaimed, for claims and auto-claims."""
        ann, ben, cat = USERS[:3]
        valid = {k: v for k, v in answers.items() if not is_invalid(k, v)}
        self.write_and_check("PUT", 0, ann, {"answers": valid}, {})
        for member, role in ((ben, "editor"), (cat, "viewer")):
            self.put_member(ann, 0, member, role)

    # -- helpers -------------------------------------------------------------------------------

    def url(self, index: int, suffix: str = "") -> str:
        return f"/v1/kits/{self.kit_ids[index]}{suffix}"

    def call(
        self,
        method: str,
        url: str,
        actor: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        sent = {**auth(actor, *(("admin",) if actor == ADMIN else ())), **(headers or {})}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            sent["Content-Type"] = content_type
        response = self.harness.request(method, url, content=content, headers=sent)
        note(f"{actor}: {method} {url} {sent.get('If-Match', '')} {body} -> {response.text}")
        return response

    def header_value(self, kind: str, version: int | None) -> str | None:
        current = version or 0
        return {
            "none": None,
            "current": f'"{current}"',
            "stale": f'"{current - 1}"',
            "next": f'"{current + 1}"',
            "star": "*",
            "weak": f'W/"{current}"',
        }[kind]

    def base_value(self, kind: str, version: int | None) -> int | None:
        current = version or 0
        return {
            "none": None,
            "current": current,
            "older": max(current - 1, 0),
            "zero": 0,
            "future": current + 1,
        }[kind]

    def check(self, response: httpx.Response, expected: Expect, kit: KitModel | None) -> None:
        """Compare a response with the prediction; ``kit`` is the predicted state after it."""
        assert response.status_code == expected.status, (
            f"expected {expected.status} {expected.code or ''}, got {response.status_code}: "
            f"{response.text}"
        )
        if expected.code is not None:
            body = response.json()
            assert response.headers["content-type"] == "application/problem+json"
            assert body["code"] == expected.code, body
            if expected.status == 412:
                assert body["currentVersion"] == expected.current_version, body
            if expected.conflicts is not None:
                assert body["conflicts"] == expected.conflicts, body
                assert body["currentVersion"] == expected.current_version, body
        elif response.status_code in (200, 201) and kit is not None:
            self.check_representation(response, kit)

    def check_representation(self, response: httpx.Response, kit: KitModel) -> None:
        body = response.json()
        assert body["answers"] == kit.answers, (body, kit)
        assert body["version"] == kit.version, (body, kit)
        assert body["status"] == kit.status, (body, kit)
        assert body["updatedBy"] == kit.updated_by, (body, kit)
        assert (body["submittedAt"] is not None) == (kit.status in FINAL), body
        assert response.headers["etag"] == f'"{kit.version}"'

    # -- writes ----------------------------------------------------------------------------------

    @rule(
        actor=actors,
        index=kit_indexes,
        answers=answer_sets(allow_null=True),
        submitted=st.booleans(),
        if_match=st.sampled_from(IF_MATCH_KINDS),
        base=st.sampled_from(BASE_KINDS),
        create_only=st.booleans(),
        keyed=st.booleans(),
    )
    def put(
        self,
        actor: str,
        index: int,
        answers: dict[str, Any],
        submitted: bool,
        if_match: str,
        base: str,
        create_only: bool,
        keyed: bool,
    ) -> None:
        kit = self.kits[index]
        body: dict[str, Any] = {"answers": answers}
        if submitted:
            body["submitted"] = True
        if (base_version := self.base_value(base, kit.version)) is not None:
            body["baseVersion"] = base_version
        headers = self.precondition_headers(if_match, kit.version)
        if create_only and if_match == "none":
            headers["If-None-Match"] = "*"
        expected, after = predict_write(
            kit,
            actor,
            method="PUT",
            body=body,
            if_match=headers.get("If-Match"),
            if_none_match=headers.get("If-None-Match"),
        )
        self.write("PUT", index, actor, body, headers, expected, after, keyed=keyed)

    @rule(
        actor=actors,
        index=kit_indexes,
        answers=answer_sets(allow_null=True),
        if_match=st.sampled_from(IF_MATCH_KINDS),
        base=st.sampled_from(BASE_KINDS),
        merge_patch=st.booleans(),
        keyed=st.booleans(),
    )
    def patch(
        self,
        actor: str,
        index: int,
        answers: dict[str, Any],
        if_match: str,
        base: str,
        merge_patch: bool,
        keyed: bool,
    ) -> None:
        kit = self.kits[index]
        body: dict[str, Any] = {"answers": answers}
        if (base_version := self.base_value(base, kit.version)) is not None:
            body["baseVersion"] = base_version
        headers = self.precondition_headers(if_match, kit.version)
        expected, after = predict_write(
            kit, actor, method="PATCH", body=body, if_match=headers.get("If-Match")
        )
        content_type = MERGE_PATCH if merge_patch else "application/json"
        self.write(
            "PATCH", index, actor, body, headers, expected, after, keyed, content_type=content_type
        )

    @rule(actor=actors, index=kit_indexes, if_match=st.sampled_from(IF_MATCH_KINDS))
    def submit(self, actor: str, index: int, if_match: str) -> None:
        kit = self.kits[index]
        headers = self.precondition_headers(if_match, kit.version)
        expected, after = predict_write(
            kit, actor, method="SUBMIT", body={}, if_match=headers.get("If-Match")
        )
        response = self.call(
            "POST", self.url(index, "/health-information/submit"), actor, headers=headers
        )
        self.settle(index, response, expected, after)

    @rule(
        actor=actors,
        index=kit_indexes,
        answers=answer_sets(allow_null=True),
        if_match=st.sampled_from(("none", "current", "stale")),
    )
    def amend(self, actor: str, index: int, answers: dict[str, Any], if_match: str) -> None:
        kit = self.kits[index]
        headers = self.precondition_headers(if_match, kit.version)
        expected, after = predict_amend(kit, actor, answers, headers.get("If-Match"))
        body = {"answers": answers, "reason": "model-based correction"}
        url = self.url(index, "/health-information/amendments")
        response = self.call("POST", url, actor, body=body, headers=headers)
        self.settle(index, response, expected, after)

    @rule(actor=actors, index=kit_indexes)
    def erase(self, actor: str, index: int) -> None:
        kit = self.kits[index]
        expected, after = Expect(204), copy.deepcopy(kit)
        if refused := kit.refusal(actor, "erase"):
            expected, after = refused, kit
        elif kit.answers is None:
            expected, after = Expect(404, "not-found"), kit
        else:
            after.answers, after.status, after.history = None, "in-progress", []
            after.field_versions = {}
        response = self.call("DELETE", self.url(index, "/health-information"), actor)
        self.settle(index, response, expected, after)
        if expected.status == 204 and self.keyed is not None and self.keyed.index == index:
            self.keyed.shredded = True

    @precondition(lambda self: self.keyed is not None)
    @rule(same_body=st.booleans())
    def replay_idempotency_key(self, same_body: bool) -> None:
        """The same key again: the stored answer (any status), or 422 for another request.

        After the kit was erased the stored answer is shredded with the kit's key
        (docs/security.md): the request runs again, as a new one, and its answer is stored.
        """
        keyed = self.keyed
        assert keyed is not None
        url = self.url(keyed.index, "/health-information")
        if not same_body:
            body = {**keyed.body, "answers": {"vaping": True, "heightCm": 151}}
            response = self.call(
                keyed.method,
                url,
                keyed.actor,
                body=body,
                headers=keyed.headers,
                content_type=keyed.content_type,
            )
            self.check(response, Expect(422, "idempotency-key-reused"), None)
            return
        if keyed.shredded:
            expected, after = predict_write(
                self.kits[keyed.index],
                keyed.actor,
                method=keyed.method,
                body=keyed.body,
                if_match=keyed.headers.get("If-Match"),
                if_none_match=keyed.headers.get("If-None-Match"),
            )
            response = self.call(
                keyed.method,
                url,
                keyed.actor,
                body=keyed.body,
                headers=keyed.headers,
                content_type=keyed.content_type,
            )
            self.settle(keyed.index, response, expected, after)
            keyed.response, keyed.shredded = response, False
            return
        response = self.call(
            keyed.method,
            url,
            keyed.actor,
            body=keyed.body,
            headers=keyed.headers,
            content_type=keyed.content_type,
        )
        assert response.status_code == keyed.response.status_code, response.text
        assert response.content == keyed.response.content
        assert response.headers.get("idempotent-replayed") == "true"

    def write_and_check(
        self, method: str, index: int, actor: str, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        expected, after = predict_write(
            self.kits[index], actor, method=method, body=body, if_match=headers.get("If-Match")
        )
        self.write(method, index, actor, body, headers, expected, after, keyed=False)

    def precondition_headers(self, kind: str, version: int | None) -> dict[str, str]:
        value = self.header_value(kind, version)
        return {} if value is None else {"If-Match": value}

    def write(
        self,
        method: str,
        index: int,
        actor: str,
        body: dict[str, Any],
        headers: dict[str, str],
        expected: Expect,
        after: KitModel,
        keyed: bool,
        content_type: str = "application/json",
    ) -> None:
        sent = dict(headers)
        if keyed:
            sent["Idempotency-Key"] = uuid.uuid4().hex
        url = self.url(index, "/health-information")
        response = self.call(method, url, actor, body=body, headers=sent, content_type=content_type)
        self.settle(index, response, expected, after)
        if keyed:
            self.keyed = KeyedWrite(method, index, actor, body, sent, content_type, response)

    def settle(
        self, index: int, response: httpx.Response, expected: Expect, after: KitModel
    ) -> None:
        self.check(response, expected, after)
        if expected.status < 400:
            self.kits[index] = after

    # -- kits and members ------------------------------------------------------------------------

    @rule(actor=actors, index=kit_indexes)
    def claim(self, actor: str, index: int) -> None:
        kit = self.kits[index]
        if kit.claimable_by_name:
            expected, after = Expect(201), kit.claimed_by(actor)
        elif kit.owner is None:  # holds answers: only a claim code claims it
            expected, after = Expect(404, "not-found"), kit
        elif kit.owner == actor:
            expected, after = Expect(200), kit
        else:
            expected, after = Expect(409, "kit-already-claimed"), kit
        response = self.call("POST", self.url(index, "/claim"), actor)
        self.check(response, expected, None)
        if expected.status < 400:
            assert response.json()["ownerId"] == actor
            self.kits[index] = after

    @rule(actor=actors, index=kit_indexes, member=users, role=st.sampled_from(("editor", "viewer")))
    def put_member(self, actor: str, index: int, member: str, role: str) -> None:
        kit = self.kits[index]
        after = copy.deepcopy(kit)
        if refused := kit.refusal(actor, "manage-members"):
            expected, after = refused, kit
        elif member == kit.owner:
            expected, after = Expect(422, "validation-failed"), kit
        else:
            expected = Expect(200 if member in kit.members else 201)
            after.members[member] = role
        url = self.url(index, f"/members/{member}")
        response = self.call("PUT", url, actor, body={"role": role})
        self.check(response, expected, None)
        if expected.status < 400:
            assert response.json()["userId"] == member
            assert response.json()["role"] == role
            self.kits[index] = after

    @rule(actor=actors, index=kit_indexes, member=users)
    def delete_member(self, actor: str, index: int, member: str) -> None:
        kit = self.kits[index]
        after = copy.deepcopy(kit)
        if refused := kit.refusal(actor, "manage-members"):
            expected, after = refused, kit
        elif member == kit.owner:
            expected, after = Expect(422, "validation-failed"), kit
        elif member not in kit.members:
            expected, after = Expect(404, "not-found"), kit
        else:
            expected = Expect(204)
            del after.members[member]
        response = self.call("DELETE", self.url(index, f"/members/{member}"), actor)
        self.settle(index, response, expected, after)

    # -- reads -----------------------------------------------------------------------------------

    @rule(actor=actors, index=kit_indexes, revalidate=st.booleans())
    def read(self, actor: str, index: int, revalidate: bool) -> None:
        kit = self.kits[index]
        headers = {}
        expected = Expect(200)
        if refused := kit.refusal(actor, "read"):
            expected = refused
        elif kit.answers is None:
            expected = Expect(404, "not-found")
        elif revalidate:
            headers["If-None-Match"] = f'"{kit.version}"'
            expected = Expect(304)
        response = self.call("GET", self.url(index, "/health-information"), actor, headers=headers)
        self.check(response, expected, kit)
        if expected.status == 304:
            assert response.headers["etag"] == f'"{kit.version}"'

    @rule(actor=actors, index=kit_indexes)
    def read_history(self, actor: str, index: int) -> None:
        kit = self.kits[index]
        expected = kit.refusal(actor, "read") or (
            Expect(404, "not-found") if kit.answers is None else Expect(200)
        )
        url = self.url(index, "/health-information/history?limit=500")
        response = self.call("GET", url, actor)
        self.check(response, expected, None)
        if expected.status == 200:
            self.check_history(response.json(), kit)

    @rule(actor=actors, index=kit_indexes, back=st.integers(0, 3))
    def read_version(self, actor: str, index: int, back: int) -> None:
        kit = self.kits[index]
        version = max((kit.version or 0) - back, 1)
        expected = kit.refusal(actor, "read") or (
            Expect(404, "not-found")
            if kit.answers is None or version > len(kit.history)
            else Expect(200)
        )
        url = self.url(index, f"/health-information/history/{version}")
        response = self.call("GET", url, actor)
        self.check(response, expected, None)
        if expected.status == 200:
            revision = kit.history[version - 1]
            body = response.json()
            assert body["version"] == version
            assert body["answers"] == revision.answers, (body, revision)
            assert body["status"] == revision.status, (body, revision)
            assert body["updatedBy"] == revision.by, (body, revision)

    @rule(actor=actors, index=kit_indexes)
    def read_members(self, actor: str, index: int) -> None:
        kit = self.kits[index]
        expected = kit.refusal(actor, "list-members") or Expect(200)
        response = self.call("GET", self.url(index, "/members"), actor)
        self.check(response, expected, None)
        if expected.status == 200:
            self.check_members(response.json(), kit)

    def check_history(self, page: dict[str, Any], kit: KitModel) -> None:
        got = [(i["version"], i["status"], i["by"], sorted(i["changed"])) for i in page["items"]]
        want = [(r.version, r.status, r.by, r.changed) for r in reversed(kit.history)]
        assert got == want, (got, want)
        versions = [item[0] for item in got]
        assert versions == list(range(len(versions), 0, -1)), f"history has gaps: {versions}"

    def check_members(self, page: dict[str, Any], kit: KitModel) -> None:
        got = [(m["userId"], m["role"]) for m in page["items"]]
        want = ([(kit.owner, "owner")] if kit.owner else []) + sorted(kit.members.items())
        assert got == want, (got, want)

    def teardown(self) -> None:
        """The whole state of every kit, read back as the admin, equals the model's."""
        if not hasattr(self, "kits"):
            return
        for index, kit in enumerate(self.kits):
            response = self.call("GET", self.url(index, "/health-information"), ADMIN)
            if kit.answers is None:
                self.check(response, Expect(404, "not-found"), None)
                continue
            self.check(response, Expect(200), kit)
            history = self.call("GET", self.url(index, "/health-information/history"), ADMIN)
            self.check_history(history.json(), kit)
            members = self.call("GET", self.url(index, "/members"), ADMIN)
            self.check_members(members.json(), kit)


@pytest.fixture
def harness(make_settings: Callable[..., Settings]) -> Iterator[Harness]:
    running = Harness(make_settings())
    try:
        yield running
    finally:
        running.close()


def test_random_call_sequences_match_the_model(harness: Harness) -> None:
    machine = type("BoundMachine", (HealthInformationMachine,), {"harness": harness})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            derandomize=not FULL,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(harness.outcomes.items()))
    print(f"\nmodel-based: {EXAMPLES} examples × ≤{STEPS} steps, {harness.calls} calls; {outcomes}")
    assert harness.calls >= EXAMPLES * 5, f"only {harness.calls} calls: the machine barely ran"
