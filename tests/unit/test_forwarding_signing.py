"""The delivery signature: a fixed vector (computed with ``openssl dgst -hmac``), and what the
lab's verification accepts and refuses."""

from __future__ import annotations

import pytest

from healthinfo.forwarding.signing import signature, signature_header, verify

SECRET = b"whsec_test_0123456789abcdef0123456789"
BODY = b'{"eventId":"e-1","kitId":"K1"}'
T = 1_767_225_600
# printf '%s' '1767225600.{"eventId":"e-1","kitId":"K1"}' | openssl dgst -sha256 -hmac "$SECRET"
EXPECTED = "856e9f9ff2a55cf6405f73fbf842d2f0c31fc7c9431de86cb0790333ec6786a1"


def test_signature_matches_an_independently_computed_vector() -> None:
    assert signature(SECRET, T, BODY) == EXPECTED
    assert signature_header(SECRET, T, BODY) == f"t={T},v1={EXPECTED}"


def test_a_fresh_correct_signature_verifies() -> None:
    assert verify(SECRET, signature_header(SECRET, T, BODY), BODY, now=T + 5)


@pytest.mark.parametrize(
    ("header", "body", "now"),
    [
        pytest.param(f"t={T},v1={EXPECTED}", BODY + b" ", T, id="body changed by one byte"),
        pytest.param(f"t={T},v1={EXPECTED}", BODY, T + 301, id="older than the window"),
        pytest.param(f"t={T},v1={EXPECTED}", BODY, T - 301, id="from the future"),
        pytest.param(f"t={T + 1},v1={EXPECTED}", BODY, T, id="timestamp swapped"),
        pytest.param(f"v1={EXPECTED}", BODY, T, id="no timestamp"),
        pytest.param(f"t={T}", BODY, T, id="no signature"),
        pytest.param(f"t={T},v0={EXPECTED}", BODY, T, id="unknown scheme only"),
        pytest.param(f"t=abc,v1={EXPECTED}", BODY, T, id="timestamp not a number"),
        pytest.param("", BODY, T, id="empty header"),
    ],
)
def test_verification_refuses(header: str, body: bytes, now: int) -> None:
    assert not verify(SECRET, header, body, now=now)


def test_another_secret_does_not_verify() -> None:
    header = signature_header(b"another-secret-0123456789abcdef012345", T, BODY)
    assert not verify(SECRET, header, BODY, now=T)


def test_one_matching_value_among_several_verifies_for_secret_rotation() -> None:
    old = signature(b"old-secret-0123456789abcdef0123456789", T, BODY)
    assert verify(SECRET, f"t={T},v1={old},v1={EXPECTED}", BODY, now=T)
