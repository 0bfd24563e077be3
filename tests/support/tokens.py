"""Tokens for tests, signed with the test secret the apps are configured with."""

from __future__ import annotations

from collections.abc import Sequence

from healthinfo.auth.tokens import mint_token

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
# Two master keys (k2 active) so that rotation and old keys are exercised by every run.
TEST_MASTER_KEYS = (
    "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8,k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"
)


def token(sub: str, roles: Sequence[str] = (), ttl_seconds: int = 3600) -> str:
    return mint_token(TEST_SECRET.encode(), sub=sub, roles=roles, ttl_seconds=ttl_seconds)


def auth(sub: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, roles)}"}


# Two audit keys (a2 active), so that every run links with one and keeps the other verifiable.
TEST_AUDIT_KEYS = (
    "a1:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8,a2:YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8"
)
