"""Presence: who is connected to a kit, and which question each one is on.

One entry per user, however many connections (tabs, devices) they hold; a user's ``field`` is
the question their most recently focusing connection is on (absent when none is). Sorted by
user id, so two instances describe the same room identically.
"""

from __future__ import annotations

from collections.abc import Iterable

from healthinfo.realtime.rooms import Member


def presence_users(members: Iterable[Member]) -> list[dict[str, str]]:
    latest: dict[str, Member] = {}
    for member in members:
        seen = latest.get(member.user_id)
        if seen is None or member.focused_at > seen.focused_at:
            latest[member.user_id] = member
    users = []
    for user_id in sorted(latest):
        entry = {"userId": user_id}
        field = latest[user_id].field
        if field is not None:
            entry["field"] = field
        users.append(entry)
    return users
