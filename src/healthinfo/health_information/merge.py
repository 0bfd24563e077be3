"""Pure rules for turning a write into new answers: replace, merge patch, rebase.

``baseVersion`` writes follow ODK Central's conflict model at question level: the writer's
intent is the set of questions it *touched* relative to its base. If someone else changed any
of those since the base (a hard conflict), the write is refused with the list; otherwise it
applies on top of the current answers (a soft conflict, merged).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from healthinfo.errors import EditConflict, FieldConflict
from healthinfo.health_information.model import Answers

_ABSENT = object()


def without_nulls(answers: Mapping[str, Any]) -> Answers:
    """PUT bodies may carry ``null`` for unanswered questions; that means "no answer"."""
    return {key: value for key, value in answers.items() if value is not None}


def apply_merge_patch(current: Mapping[str, Any], patch: Mapping[str, Any]) -> Answers:
    """RFC 7396 on the answers object: ``null`` removes a question, anything else replaces it."""
    result = dict(current)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def changed_ids(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Question ids whose answer differs, including answers added or removed."""
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k, _ABSENT) != after.get(k, _ABSENT))


def desired_from_replacement(base: Mapping[str, Any], replacement: Mapping[str, Any]) -> Answers:
    """A PUT's intent relative to its base: each touched question, its new value (None: removed)."""
    return {key: replacement.get(key) for key in changed_ids(base, replacement)}


def rebase(
    current: Mapping[str, Any],
    field_versions: Mapping[str, int],
    *,
    base_version: int,
    current_version: int,
    desired: Mapping[str, Any],
) -> Answers:
    """Apply ``desired`` on top of ``current`` unless a touched question moved since the base.

    A question changed by someone else to exactly the value this writer wants is no conflict:
    both meant the same, and a retried write must not fail against itself.
    """
    conflicts = [
        FieldConflict(key, field_versions[key])
        for key in sorted(desired)
        if field_versions.get(key, 0) > base_version
        and current.get(key, _ABSENT) != _or_absent(desired[key])
    ]
    if conflicts:
        raise EditConflict(conflicts, current_version=current_version, base_version=base_version)
    return apply_merge_patch(current, desired)


def bump_field_versions(
    field_versions: Mapping[str, int], changed: Iterable[str], version: int
) -> dict[str, int]:
    updated = dict(field_versions)
    updated.update(dict.fromkeys(changed, version))
    return updated


def _or_absent(value: Any) -> Any:
    return _ABSENT if value is None else value
