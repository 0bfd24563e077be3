"""A FHIR R4 ``Questionnaire`` read as a definition (``POST /v1/questionnaires``, FHIR body).

The contract: every construct in the table of docs/fhir.md is read into the definition; an
``extension`` the service does not interpret is kept unchanged (``fhirExtensions``); anything
else (an element the table does not list, any ``modifierExtension``, an ``answerValueSet``
that is not a ``contained`` ValueSet, what FHIR's own rules forbid) is an error. Nothing is
dropped silently: every fault is collected and reported at once as a 422 whose field errors
name the element (``item[2].item[0].enableWhen[1]``) and, in the message, the item's linkId.

The definition is then built and checked by ``questionnaires.model`` exactly as a JSON
definition is, so the rules (conditions, cycles, bounds) are one set; its errors are moved
onto the FHIR paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from healthinfo.errors import FieldError, MalformedRequest, ValidationFailed
from healthinfo.fhir.mapping import (
    MAX_OCCURS,
    MAX_VALUE,
    MIN_VALUE,
    SECTION,
    TODAY_BOUND,
    default_code_system,
    default_questionnaire_url,
    find_option,
)
from healthinfo.questionnaires.model import (
    CHOICE_TYPES,
    TODAY,
    Condition,
    DefinitionError,
    Item,
    Option,
    Questionnaire,
)

FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
VERSION: Final = re.compile(r"[A-Za-z0-9\-.]{1,16}")
DEFAULT_VERSION: Final = "1"

_RESOURCE_KEYS: Final = frozenset(
    {
        "resourceType",
        "id",
        "meta",
        "text",
        "url",
        "version",
        "name",
        "title",
        "status",
        "extension",
        "contained",
        "item",
    }
)
"""What a Questionnaire may hold. ``meta`` and ``text`` (the narrative) are read as FHIR says
a server may (they describe the resource, the service regenerates them); ``name`` is derived
from the id on export and ``status`` is the service's own (publish, retire)."""
_ITEM_KEYS: Final = frozenset(
    {
        "id",
        "linkId",
        "text",
        "type",
        "required",
        "repeats",
        "readOnly",
        "maxLength",
        "enableWhen",
        "enableBehavior",
        "answerOption",
        "answerValueSet",
        "item",
        "extension",
    }
)
_QUESTION_TYPES: Final[Mapping[str, str]] = {
    "group": "group",
    "display": "display",
    "boolean": "boolean",
    "decimal": "decimal",
    "integer": "integer",
    "date": "date",
    "dateTime": "dateTime",
    "time": "time",
    "string": "string",
    "text": "text",
    "choice": "single-choice",
    "open-choice": "single-choice",
}
"""R4 ``item.type`` → ours (``repeats`` makes a choice a multiple choice)."""
_BOUND_KEY: Final[Mapping[str, str]] = {
    "integer": "valueInteger",
    "decimal": "valueDecimal",
    "date": "valueDate",
    "dateTime": "valueDateTime",
    "time": "valueTime",
}
_CONDITION_KEY: Final[Mapping[str, str]] = {
    "boolean": "answerBoolean",
    "integer": "answerInteger",
    "decimal": "answerDecimal",
    "date": "answerDate",
    "dateTime": "answerDateTime",
    "time": "answerTime",
    "string": "answerString",
    "text": "answerString",
}
_TODAY_BOUNDS: Final[Mapping[str, str]] = {"minValue": "minimum", "maxValue": "maximum"}
_OPERATORS: Final = frozenset({"exists", "=", "!=", ">", "<", ">=", "<="})
_STATUSES: Final = frozenset({"draft", "active", "unknown"})
_CODING_KEYS: Final = frozenset({"system", "code", "display"})
_MODEL_PATH: Final = re.compile(r"items\[")


@dataclass
class _Draft:
    """One item read from FHIR, before its conditions are (they need every item's type)."""

    path: str
    link_id: str
    fields: dict[str, Any]
    conditions: list[Any]
    children: list[_Draft] = field(default_factory=list)
    broken: bool = False  # a fault is reported already: building it would only repeat it


def questionnaire_from_fhir(resource: Any) -> Questionnaire:
    """The definition a FHIR R4 Questionnaire describes; ``ValidationFailed`` lists every fault.

    ``MalformedRequest`` when ``resource`` is not a JSON object.
    """
    if not isinstance(resource, Mapping):
        raise MalformedRequest("The body must be a FHIR Questionnaire (a JSON object).")
    if resource.get("resourceType") != "Questionnaire":
        raise ValidationFailed(
            [FieldError("resourceType", "must be Questionnaire")],
            "Only a FHIR Questionnaire can be published as FHIR.",
        )
    return _Importer(resource).run()


class _Importer:
    def __init__(self, resource: Mapping[str, Any]) -> None:
        self.resource = resource
        self.errors: list[FieldError] = []
        self.value_sets: dict[str, Mapping[str, Any]] = {}
        self.used_value_sets: set[str] = set()
        self.link_ids: dict[str, str] = {}  # FHIR path of an item → its linkId
        self.questionnaire_id = ""

    # -- errors ------------------------------------------------------------------------------

    def fail(self, path: str, message: str, link_id: str | None = None) -> None:
        prefix = f"linkId {link_id!r}: " if link_id is not None else ""
        self.errors.append(FieldError(path, prefix + message))

    def link_of(self, path: str) -> str | None:
        """The linkId of the innermost item ``path`` lies in."""
        best: str | None = None
        for item_path in self.link_ids:
            if (path == item_path or path.startswith(item_path + ".")) and (
                best is None or len(item_path) > len(best)
            ):
                best = item_path
        return self.link_ids[best] if best is not None else None

    # -- the resource ------------------------------------------------------------------------

    def run(self) -> Questionnaire:
        resource = self.resource
        for key in resource:
            if key == "modifierExtension":
                self._modifier_extensions(resource[key], "modifierExtension", None)
            elif key not in _RESOURCE_KEYS:
                self.fail(str(key), "is not supported by this service (docs/fhir.md)")
        questionnaire_id = self.questionnaire_id = self._header()
        extensions = self._kept_extensions(resource.get("extension", []), "extension", None)
        self._contained(resource.get("contained", []))
        raw_items = resource.get("item")
        drafts: list[_Draft] = []
        if not isinstance(raw_items, list) or not raw_items:
            self.fail("item", "must be a non-empty list of items")
        else:
            drafts = [
                d
                for index, raw in enumerate(raw_items)
                if (d := self._item(raw, f"item[{index}]", "")) is not None
            ]
        for unused in sorted(self.value_sets.keys() - self.used_value_sets):
            self.fail("contained", f"ValueSet {unused!r} is contained but no item uses it")
        by_link = _index(drafts)
        items = self._build(drafts, by_link)
        if self.errors:
            raise ValidationFailed(self.errors)
        url = resource.get("url")
        if url == default_questionnaire_url(questionnaire_id):
            url = None  # the service's own canonical for this id: nothing to keep
        try:
            return Questionnaire(
                id=questionnaire_id,
                version=resource.get("version", DEFAULT_VERSION),
                title=resource["title"],
                items=tuple(items),
                url=url,
                fhir_extensions=tuple(extensions),
            )
        except DefinitionError as exc:
            for path, message in exc.errors:
                fhir_path = _MODEL_PATH.sub("item[", path)
                self.fail(fhir_path, message, self.link_of(fhir_path))
        except ValueError as exc:
            self.fail("item", str(exc))
        raise ValidationFailed(self.errors)

    def _header(self) -> str:
        resource = self.resource
        questionnaire_id = resource.get("id")
        if questionnaire_id is None:
            self.fail("id", "is required: it becomes the questionnaire's id")
        elif not isinstance(questionnaire_id, str) or not FHIR_ID.fullmatch(questionnaire_id):
            self.fail("id", "must be 1 to 64 letters, digits, '-' or '.'")
        version = resource.get("version", DEFAULT_VERSION)
        if not isinstance(version, str) or not VERSION.fullmatch(version):
            self.fail("version", "must be 1 to 16 letters, digits, '-' or '.'")
        title = resource.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 255:
            self.fail("title", "is required: 1 to 255 characters")
        url = resource.get("url")
        if url is not None and (not isinstance(url, str) or not url.strip()):
            self.fail("url", "must be a non-empty string")
        status = resource.get("status")
        if status == "retired":
            self.fail("status", "publish it, then retire it with the retire route")
        elif not isinstance(status, str) or status not in _STATUSES:
            self.fail("status", "must be draft, active or unknown")
        for key in ("name",):
            if key in resource and not isinstance(resource[key], str):
                self.fail(key, "must be a string")
        return questionnaire_id if isinstance(questionnaire_id, str) else ""

    def _contained(self, raw: object) -> None:
        if not isinstance(raw, list):
            self.fail("contained", "must be a list")
            return
        for index, entry in enumerate(raw):
            path = f"contained[{index}]"
            if not isinstance(entry, Mapping) or entry.get("resourceType") != "ValueSet":
                self.fail(path, "only ValueSets (for answerValueSet) are supported")
            elif not isinstance(entry.get("id"), str) or entry["id"] in self.value_sets:
                self.fail(f"{path}.id", "a contained ValueSet needs its own id")
            else:
                self.value_sets[entry["id"]] = entry

    # -- extensions --------------------------------------------------------------------------

    def _modifier_extensions(self, raw: object, path: str, link_id: str | None) -> None:
        entries = raw if isinstance(raw, list) else [raw]
        for index, entry in enumerate(entries):
            url = entry.get("url") if isinstance(entry, Mapping) else None
            name = f" {url}" if isinstance(url, str) else ""
            self.fail(f"{path}[{index}]", f"modifierExtension{name} is not understood", link_id)

    def _kept_extensions(self, raw: object, path: str, link_id: str | None) -> list[Any]:
        """Extensions to store unchanged (each an object with a url)."""
        if not isinstance(raw, list):
            self.fail(path, "must be a list", link_id)
            return []
        kept = []
        for index, entry in enumerate(raw):
            fault = _extension_fault(entry)
            if fault is not None:
                self.fail(f"{path}[{index}]", fault, link_id)
            elif entry["url"] in (MIN_VALUE, MAX_VALUE, MAX_OCCURS, SECTION, TODAY_BOUND):
                self.fail(f"{path}[{index}]", "only an item may have this extension", link_id)
            else:
                kept.append(dict(entry))
        return kept

    # -- items -------------------------------------------------------------------------------

    def _item(self, raw: object, path: str, section: str) -> _Draft | None:
        if not isinstance(raw, Mapping):
            self.fail(path, "must be an object")
            return None
        link_id = raw.get("linkId")
        if not isinstance(link_id, str) or not link_id:
            self.fail(f"{path}.linkId", "is required")
            return None
        self.link_ids[path] = link_id
        for key in raw:
            if key == "modifierExtension":
                self._modifier_extensions(raw[key], f"{path}.modifierExtension", link_id)
            elif key not in _ITEM_KEYS:
                self.fail(f"{path}.{key}", f"{key} is not supported (docs/fhir.md)", link_id)
        raw_type = raw.get("type")
        fhir_type = raw_type if isinstance(raw_type, str) else ""
        kind = _QUESTION_TYPES.get(fhir_type)
        if kind is None:
            self.fail(f"{path}.type", f"type {raw_type!r} is not supported", link_id)
            return None
        fields: dict[str, Any] = {"id": link_id, "text": raw.get("text"), "type": kind}
        for flag, name in (("required", "required"), ("readOnly", "read_only")):
            if flag in raw:
                fields[name] = raw[flag]
        fields.setdefault("required", False)
        self._repeats(raw, path, link_id, fhir_type, fields)
        if fhir_type == "open-choice":
            fields["open_choice"] = True
        if "maxLength" in raw:
            if kind in ("string", "text") or fhir_type == "open-choice":
                fields["max_length"] = raw["maxLength"]
            else:
                self.fail(f"{path}.maxLength", f"is not supported on {fhir_type} items", link_id)
        if "enableBehavior" in raw:
            fields["enable_behavior"] = raw["enableBehavior"]
        own_section = self._extensions(raw, path, link_id, fields, section)
        fields["section"] = own_section
        before = len(self.errors)
        self._options(raw, path, link_id, fhir_type, fields)
        broken = len(self.errors) > before
        conditions = raw.get("enableWhen", [])
        if not isinstance(conditions, list):
            self.fail(f"{path}.enableWhen", "must be a list", link_id)
            conditions = []
        draft = _Draft(path, link_id, fields, conditions, broken=broken)
        children = raw.get("item", [])
        if not isinstance(children, list):
            self.fail(f"{path}.item", "must be a list", link_id)
        elif children and kind != "group":
            message = (
                "a display item cannot have items (que-1)"
                if kind == "display"
                else "items nested under a question are not supported"
            )
            self.fail(f"{path}.item", message, link_id)
        else:
            for index, child in enumerate(children):
                built = self._item(child, f"{path}.item[{index}]", own_section)
                if built is not None:
                    draft.children.append(built)
        return draft

    def _repeats(
        self,
        raw: Mapping[str, Any],
        path: str,
        link_id: str,
        fhir_type: str,
        fields: dict[str, Any],
    ) -> None:
        repeats = raw.get("repeats", False)
        if not isinstance(repeats, bool):
            self.fail(f"{path}.repeats", "must be true or false", link_id)
        elif not repeats:
            return
        elif fhir_type == "group":
            fields["repeats"] = True
        elif fhir_type in ("choice", "open-choice"):
            fields["type"] = "multiple-choice"
        elif fhir_type == "display":
            self.fail(f"{path}.repeats", "a display item cannot repeat (que-6)", link_id)
        else:
            message = f"repeats is supported on groups and choices, not on {fhir_type} items"
            self.fail(f"{path}.repeats", message, link_id)

    def _extensions(
        self,
        raw: Mapping[str, Any],
        path: str,
        link_id: str,
        fields: dict[str, Any],
        section: str,
    ) -> str:
        """Bounds, maxOccurs and the section; other extensions are kept. Returns the section."""
        extensions = raw.get("extension", [])
        if not isinstance(extensions, list):
            self.fail(f"{path}.extension", "must be a list", link_id)
            return section
        kept = []
        own_section = section
        for index, entry in enumerate(extensions):
            at = f"{path}.extension[{index}]"
            url = entry.get("url") if isinstance(entry, Mapping) else None
            fault = _extension_fault(entry)
            if fault is not None or not isinstance(entry, Mapping) or not isinstance(url, str):
                self.fail(at, fault or "an extension needs a url", link_id)
            elif url == TODAY_BOUND:
                code = _only_value(entry, "valueCode")
                name = _TODAY_BOUNDS.get(code) if isinstance(code, str) else None
                if name is None or raw.get("type") != "date":
                    self.fail(
                        at, "today-bound is valueCode minValue or maxValue on a date", link_id
                    )
                else:
                    fields[name] = TODAY
            elif url in (MIN_VALUE, MAX_VALUE):
                name = "minimum" if url == MIN_VALUE else "maximum"
                bound = self._bound(entry, at, link_id, raw.get("type"))
                if bound is not None:
                    fields[name] = bound
            elif url == MAX_OCCURS:
                if not raw.get("repeats"):
                    self.fail(at, "questionnaire-maxOccurs needs repeats: true", link_id)
                fields["max_items"] = _only_value(entry, "valueInteger")
                if fields["max_items"] is None:
                    self.fail(at, "questionnaire-maxOccurs needs a valueInteger", link_id)
            elif url == SECTION:
                value = _only_value(entry, "valueString")
                if not isinstance(value, str) or not value.strip():
                    self.fail(at, "the section extension needs a non-empty valueString", link_id)
                else:
                    own_section = value
            else:
                kept.append(dict(entry))
        if kept:
            fields["fhir_extensions"] = tuple(kept)
        return own_section

    def _bound(self, entry: Mapping[str, Any], at: str, link_id: str, fhir_type: object) -> Any:
        key = _BOUND_KEY.get(fhir_type) if isinstance(fhir_type, str) else None
        if key is None:
            self.fail(at, f"minValue/maxValue is not supported on a {fhir_type} item", link_id)
            return None
        value = _only_value(entry, key)
        if value is None:
            self.fail(at, f"a {fhir_type} item's bound must be a {key}", link_id)
        return value

    def _options(
        self,
        raw: Mapping[str, Any],
        path: str,
        link_id: str,
        fhir_type: str,
        fields: dict[str, Any],
    ) -> None:
        has_options, has_value_set = "answerOption" in raw, "answerValueSet" in raw
        if not (has_options or has_value_set):
            return
        if fhir_type not in ("choice", "open-choice"):
            self.fail(
                path, "only choice items have answerOption or answerValueSet (que-5)", link_id
            )
            return
        if has_options and has_value_set:
            self.fail(path, "answerOption and answerValueSet cannot both be given (que-4)", link_id)
            return
        if has_options:
            options = self._answer_options(raw["answerOption"], f"{path}.answerOption", link_id)
        else:
            options = self._value_set(raw["answerValueSet"], f"{path}.answerValueSet", link_id)
        fields["options"] = tuple(options)

    def _answer_options(self, raw: object, path: str, link_id: str) -> list[Option]:
        if not isinstance(raw, list):
            self.fail(path, "must be a list", link_id)
            return []
        options = []
        for index, entry in enumerate(raw):
            at = f"{path}[{index}]"
            keys = list(entry) if isinstance(entry, Mapping) else []
            if keys == ["valueCoding"]:
                option = self._coding(entry["valueCoding"], f"{at}.valueCoding", link_id, None)
            elif keys in (["valueString"], ["valueInteger"]):
                option = self._plain_option(entry[keys[0]], at, link_id)
            else:
                message = "an answerOption is one valueCoding, valueString or valueInteger only"
                self.fail(at, message, link_id)
                option = None
            if option is not None:
                options.append(option)
        return options

    def _plain_option(self, value: object, at: str, link_id: str) -> Option | None:
        try:
            return Option(value=value)  # type: ignore[arg-type]  # checked by Option
        except ValueError as exc:
            self.fail(at, str(exc), link_id)
            return None

    def _coding(self, coding: object, at: str, link_id: str, system: str | None) -> Option | None:
        """An option from a Coding (or a ValueSet concept, whose system is ``system``)."""
        if not isinstance(coding, Mapping) or coding.keys() - _CODING_KEYS - {"version"}:
            self.fail(at, "a coding is system, code and display only", link_id)
            return None
        if "version" in coding:
            self.fail(f"{at}.version", "a coding's version is not supported", link_id)
            return None
        code: Any = coding.get("code")
        display = coding.get("display")
        own_system = coding.get("system", system)
        if own_system == default_code_system(self.questionnaire_id, link_id):
            own_system = None  # the service's own code system for this item: nothing to keep
        # A code with neither display nor system would read back as a plain string option.
        label = display if display is not None or own_system is not None else code
        try:
            return Option(value=code, label=label, system=own_system)
        except ValueError as exc:
            self.fail(at, str(exc), link_id)
            return None

    def _value_set(self, reference: object, path: str, link_id: str) -> list[Option]:
        if not isinstance(reference, str) or not reference.startswith("#"):
            self.fail(path, "must name a ValueSet contained in this Questionnaire (#id)", link_id)
            return []
        value_set = self.value_sets.get(reference[1:])
        if value_set is None:
            self.fail(path, "names no ValueSet contained in this Questionnaire", link_id)
            return []
        self.used_value_sets.add(reference[1:])
        expansion = value_set.get("expansion")
        if expansion is not None:
            contains = expansion.get("contains") if isinstance(expansion, Mapping) else None
            return self._concepts(contains, path, link_id, None, nested_ok=False)
        compose = value_set.get("compose")
        includes = compose.get("include") if isinstance(compose, Mapping) else None
        if not isinstance(includes, list) or not includes:
            self.fail(path, "the ValueSet must list its concepts (compose or expansion)", link_id)
            return []
        options: list[Option] = []
        for include in includes:
            if not isinstance(include, Mapping) or include.keys() - {"system", "concept"}:
                self.fail(
                    path, "only compose.include with system and concept is supported", link_id
                )
                continue
            system = include.get("system")
            options += self._concepts(include.get("concept"), path, link_id, system, nested_ok=True)
        return options

    def _concepts(
        self, concepts: object, path: str, link_id: str, system: str | None, *, nested_ok: bool
    ) -> list[Option]:
        if not isinstance(concepts, list) or not concepts:
            self.fail(path, "the ValueSet must list its concepts (compose or expansion)", link_id)
            return []
        options = []
        for concept in concepts:
            if isinstance(concept, Mapping) and "contains" in concept and not nested_ok:
                self.fail(path, "a nested expansion is not supported", link_id)
                continue
            option = self._coding(concept, path, link_id, system)
            if option is not None:
                options.append(option)
        return options

    # -- conditions and building -------------------------------------------------------------

    def _build(self, drafts: list[_Draft], by_link: Mapping[str, _Draft]) -> list[Item]:
        items = []
        for draft in drafts:
            children = self._build(draft.children, by_link)
            conditions = self._conditions(draft, by_link)
            if len(children) != len(draft.children) or conditions is None or draft.broken:
                continue  # the faults are recorded; the parent cannot be built either
            try:
                items.append(Item(**draft.fields, items=tuple(children), enable_when=conditions))
            except ValueError as exc:
                self.fail(
                    draft.path, str(exc).removeprefix(f"item {draft.link_id!r}: "), draft.link_id
                )
        return items

    def _conditions(
        self, draft: _Draft, by_link: Mapping[str, _Draft]
    ) -> tuple[Condition, ...] | None:
        result = []
        failed = False
        for index, raw in enumerate(draft.conditions):
            at = f"{draft.path}.enableWhen[{index}]"
            condition = self._condition(raw, at, draft.link_id, by_link)
            if condition is None:
                failed = True
            else:
                result.append(condition)
        return None if failed else tuple(result)

    def _condition(
        self, raw: object, at: str, link_id: str, by_link: Mapping[str, _Draft]
    ) -> Condition | None:
        if not isinstance(raw, Mapping):
            self.fail(at, "must be an object", link_id)
            return None
        answers = [key for key in raw if isinstance(key, str) and key.startswith("answer")]
        unknown = raw.keys() - {"question", "operator", *answers}
        if unknown:
            names = ", ".join(sorted(map(str, unknown)))
            self.fail(at, f"enableWhen has unsupported elements: {names}", link_id)
            return None
        question, operator = raw.get("question"), raw.get("operator")
        if (
            not isinstance(question, str)
            or not isinstance(operator, str)
            or operator not in _OPERATORS
            or len(answers) != 1
        ):
            message = "enableWhen needs a question, an operator and exactly one answer[x]"
            self.fail(at, message, link_id)
            return None
        key = answers[0]
        value = raw[key]
        target = by_link.get(question)
        if operator == "exists":
            if key != "answerBoolean":
                self.fail(at, "exists takes answerBoolean (que-7)", link_id)
                return None
        elif target is not None:
            expected = _condition_keys(target)
            if key not in expected:
                fhir = " or ".join(expected) or "no answer[x]"
                self.fail(at, f"{key} does not fit {question!r}: use {fhir}", link_id)
                return None
            if key == "answerCoding":
                value = self._condition_code(value, at, link_id, target)
                if value is None:
                    return None
        if value is None:
            self.fail(at, f"{key} must not be null", link_id)
            return None
        return Condition(question=question, operator=operator, answer=value)

    def _condition_code(self, coding: object, at: str, link_id: str, target: _Draft) -> str | None:
        if not isinstance(coding, Mapping) or not isinstance(coding.get("code"), str):
            self.fail(at, "answerCoding needs a code", link_id)
            return None
        code: str = coding["code"]
        option = find_option(target.fields.get("options", ()), code)
        system = coding.get("system")
        own = option.system if option is not None else None
        if own is not None and system is not None and system != own:
            self.fail(at, "answerCoding.system is not the option's system", link_id)
            return None
        return code


def _condition_keys(target: _Draft) -> list[str]:
    """The ``answer[x]`` a condition on ``target`` may carry."""
    kind = target.fields["type"]
    if kind not in CHOICE_TYPES:
        key = _CONDITION_KEY.get(kind)
        return [key] if key is not None else []
    kinds = {option.kind for option in target.fields.get("options", ())}
    keys = [
        key
        for name, key in (
            ("coding", "answerCoding"),
            ("string", "answerString"),
            ("integer", "answerInteger"),
        )
        if name in kinds
    ]
    if target.fields.get("open_choice") and "answerString" not in keys:
        keys.append("answerString")
    return keys


def _index(drafts: list[_Draft]) -> dict[str, _Draft]:
    result: dict[str, _Draft] = {}

    def visit(level: list[_Draft]) -> None:
        for draft in level:
            result.setdefault(draft.link_id, draft)
            visit(draft.children)

    visit(drafts)
    return result


def _extension_fault(entry: object) -> str | None:
    """Why ``entry`` is no FHIR extension (ext-1: a url and a value or nested extensions;
    ele-1: nothing empty or null), or ``None``. Its content is not interpreted further."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("url"), str) or not entry["url"]:
        return "an extension needs a url"
    values = [key for key in entry if isinstance(key, str) and key.startswith("value")]
    nested = entry.get("extension")
    if len(values) + (nested is not None) != 1 or (
        nested is not None and not isinstance(nested, list)
    ):
        return "an extension has either one value[x] or nested extensions (ext-1)"
    if not _non_empty(entry):
        return "an extension holds no empty or null elements (ele-1)"
    if isinstance(nested, list) and any(_extension_fault(inner) for inner in nested):
        return "a nested extension needs a url and one value[x] or extensions"
    return None


def _non_empty(value: object) -> bool:
    if isinstance(value, Mapping):
        return bool(value) and all(_non_empty(entry) for entry in value.values())
    if isinstance(value, list):
        return bool(value) and all(_non_empty(entry) for entry in value)
    if isinstance(value, str):
        return bool(value.strip())
    return value is not None


def _only_value(entry: Mapping[str, Any], key: str) -> Any:
    """The extension's ``key`` when it is the only value[x] it has."""
    values = [k for k in entry if isinstance(k, str) and k.startswith(("value", "_value"))]
    return entry[key] if values == [key] else None
