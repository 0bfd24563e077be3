"""Bearer-token verification: what is accepted, what is refused, and what the caller is told."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from healthinfo.auth.actor import Actor
from healthinfo.auth.tokens import TokenVerifier, mint_token, pem_key_id
from healthinfo.errors import Unauthenticated

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32

EXPIRED = "The token has expired."
BAD_SIGNATURE = "The token signature is invalid."
MALFORMED = "The token is malformed."
BAD_ALGORITHM = "The token's algorithm is not accepted."
BAD_ISSUER_OR_AUDIENCE = "The token's issuer/audience is not accepted."
MISSING_CLAIM = "The token lacks a required claim."

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --- helpers ------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "user-1", "exp": int(time.time()) + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hand_token(
    header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _pem(private_key: PrivateKey) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _hs(claims: dict[str, Any], secret: bytes = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


async def _rejection(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    return caught.value.detail


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hs_verifier() -> TokenVerifier:
    return TokenVerifier(hs_secret=SECRET)


# --- HS256 --------------------------------------------------------------------------------


async def test_valid_hs256_token_yields_actor_with_user_id_and_roles(
    hs_verifier: TokenVerifier,
) -> None:
    token = mint_token(SECRET, sub="user-1", roles=["admin", "auditor"])

    assert await hs_verifier.verify(token) == Actor("user-1", frozenset({"admin", "auditor"}))


async def test_token_without_roles_yields_actor_with_no_roles(hs_verifier: TokenVerifier) -> None:
    actor = await hs_verifier.verify(mint_token(SECRET, sub="user-1"))

    assert actor.roles == frozenset()


async def test_expired_token_is_rejected_as_expired(hs_verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, sub="u", ttl_seconds=60, now=datetime.now(UTC) - timedelta(hours=1))

    assert await _rejection(hs_verifier, token) == EXPIRED


async def test_token_expired_within_the_leeway_is_accepted() -> None:
    verifier = TokenVerifier(hs_secret=SECRET, leeway_seconds=30)
    token = _hs(_claims(exp=int(time.time()) - 10))

    assert (await verifier.verify(token)).user_id == "user-1"


async def test_tampered_signature_is_rejected(hs_verifier: TokenVerifier) -> None:
    header, payload, signature = mint_token(SECRET, sub="u").split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    assert await _rejection(hs_verifier, f"{header}.{payload}.{flipped}") == BAD_SIGNATURE


async def test_tampered_payload_is_rejected(hs_verifier: TokenVerifier) -> None:
    header, _, signature = mint_token(SECRET, sub="user-1").split(".")
    forged = _segment(_claims(sub="admin-user", roles=["admin"]))

    assert await _rejection(hs_verifier, f"{header}.{forged}.{signature}") == BAD_SIGNATURE


async def test_token_signed_with_another_secret_is_rejected(hs_verifier: TokenVerifier) -> None:
    token = mint_token(OTHER_SECRET, sub="u")

    assert await _rejection(hs_verifier, token) == BAD_SIGNATURE


# --- algorithm handling -------------------------------------------------------------------


async def test_alg_none_token_is_rejected(hs_verifier: TokenVerifier) -> None:
    token = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(_claims())}."

    assert await _rejection(hs_verifier, token) == BAD_ALGORITHM


async def test_token_without_signature_is_rejected(hs_verifier: TokenVerifier) -> None:
    token = f"{_segment({'alg': 'HS256'})}.{_segment(_claims())}."

    assert await _rejection(hs_verifier, token) == BAD_SIGNATURE


async def test_token_without_alg_header_is_rejected(hs_verifier: TokenVerifier) -> None:
    token = _hand_token({"typ": "JWT"}, _claims(), lambda m: hmac.digest(SECRET, m, "sha256"))

    assert await _rejection(hs_verifier, token) == BAD_ALGORITHM


async def test_other_algorithm_is_rejected(hs_verifier: TokenVerifier) -> None:
    token = jwt.encode(_claims(), SECRET * 2, algorithm="HS512")

    assert await _rejection(hs_verifier, token) == BAD_ALGORITHM


async def test_hs256_token_keyed_with_the_rsa_public_key_pem_is_rejected(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    pem = _pem(rsa_key)
    verifier = TokenVerifier(public_keys_pem=[pem])
    token = _hand_token(
        {"alg": "HS256", "typ": "JWT"},
        _claims(roles=["admin"]),
        lambda m: hmac.digest(pem.encode(), m, hashlib.sha256),
    )

    assert await _rejection(verifier, token) == BAD_ALGORITHM


async def test_hs256_token_keyed_with_the_public_key_fails_even_with_a_secret_configured(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    pem = _pem(rsa_key)
    verifier = TokenVerifier(hs_secret=SECRET, public_keys_pem=[pem])
    token = _hand_token(
        {"alg": "HS256"}, _claims(), lambda m: hmac.digest(pem.encode(), m, hashlib.sha256)
    )

    assert await _rejection(verifier, token) == BAD_SIGNATURE


async def test_rs256_token_is_rejected_by_a_verifier_with_only_a_secret(
    hs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256")

    assert await _rejection(hs_verifier, token) == BAD_ALGORITHM


async def test_es256_token_is_rejected_when_only_rsa_keys_are_configured(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = TokenVerifier(public_keys_pem=[_pem(rsa_key)])
    token = jwt.encode(_claims(), ec_key, algorithm="ES256")

    assert await _rejection(verifier, token) == BAD_ALGORITHM


# --- asymmetric keys from PEM -------------------------------------------------------------


async def test_rs256_token_is_verified_with_a_pem_key(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(public_keys_pem=[_pem(rsa_key)])
    token = jwt.encode(_claims(roles=["auditor"]), rsa_key, algorithm="RS256")

    assert await verifier.verify(token) == Actor("user-1", frozenset({"auditor"}))


async def test_es256_token_is_verified_with_a_pem_key(ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = TokenVerifier(public_keys_pem=[_pem(ec_key)])
    token = jwt.encode(_claims(), ec_key, algorithm="ES256")

    assert (await verifier.verify(token)).user_id == "user-1"


async def test_rs256_token_signed_by_an_unknown_key_is_rejected(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(public_keys_pem=[_pem(rsa_key)])
    token = jwt.encode(_claims(), other_rsa_key, algorithm="RS256")

    assert await _rejection(verifier, token) == BAD_SIGNATURE


async def test_token_kid_picks_the_matching_key_among_two(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    first, second = _pem(rsa_key), _pem(other_rsa_key)
    verifier = TokenVerifier(public_keys_pem=[first, second])
    token = jwt.encode(
        _claims(), other_rsa_key, algorithm="RS256", headers={"kid": pem_key_id(second)}
    )

    assert (await verifier.verify(token)).user_id == "user-1"


async def test_token_kid_naming_one_key_is_not_tried_against_the_other(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    first, second = _pem(rsa_key), _pem(other_rsa_key)
    verifier = TokenVerifier(public_keys_pem=[first, second])
    token = jwt.encode(
        _claims(), other_rsa_key, algorithm="RS256", headers={"kid": pem_key_id(first)}
    )

    assert await _rejection(verifier, token) == BAD_SIGNATURE


async def test_token_without_kid_is_tried_against_each_key(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(public_keys_pem=[_pem(rsa_key), _pem(other_rsa_key)])
    token = jwt.encode(_claims(), other_rsa_key, algorithm="RS256")

    assert (await verifier.verify(token)).user_id == "user-1"


async def test_expired_token_is_reported_expired_even_when_another_key_comes_first(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(public_keys_pem=[_pem(other_rsa_key), _pem(rsa_key)])
    token = jwt.encode(_claims(exp=int(time.time()) - 3600), rsa_key, algorithm="RS256")

    assert await _rejection(verifier, token) == EXPIRED


# --- claims -------------------------------------------------------------------------------


async def test_token_without_exp_is_rejected(hs_verifier: TokenVerifier) -> None:
    token = _hs({"sub": "user-1"})

    assert await _rejection(hs_verifier, token) == MISSING_CLAIM


async def test_token_without_sub_is_rejected(hs_verifier: TokenVerifier) -> None:
    token = _hs({"exp": int(time.time()) + 600})

    assert await _rejection(hs_verifier, token) == MISSING_CLAIM


async def test_token_with_empty_sub_is_rejected(hs_verifier: TokenVerifier) -> None:
    assert await _rejection(hs_verifier, _hs(_claims(sub=""))) == MISSING_CLAIM


async def test_token_with_overlong_sub_is_rejected(hs_verifier: TokenVerifier) -> None:
    assert await _rejection(hs_verifier, _hs(_claims(sub="u" * 256))) == MALFORMED


@pytest.mark.parametrize("roles", ["admin", {"admin": True}, ["admin", 1], 7])
async def test_roles_that_are_not_a_list_of_strings_are_rejected(
    hs_verifier: TokenVerifier, roles: object
) -> None:
    assert await _rejection(hs_verifier, _hs(_claims(roles=roles))) == MALFORMED


async def test_issuer_is_checked_when_configured() -> None:
    verifier = TokenVerifier(hs_secret=SECRET, issuer="https://id.example")
    good = mint_token(SECRET, sub="u", issuer="https://id.example")
    bad = mint_token(SECRET, sub="u", issuer="https://evil.example")

    assert (await verifier.verify(good)).user_id == "u"
    assert await _rejection(verifier, bad) == BAD_ISSUER_OR_AUDIENCE


async def test_missing_issuer_is_rejected_when_configured() -> None:
    verifier = TokenVerifier(hs_secret=SECRET, issuer="https://id.example")

    assert await _rejection(verifier, mint_token(SECRET, sub="u")) == MISSING_CLAIM


async def test_audience_is_checked_when_configured() -> None:
    verifier = TokenVerifier(hs_secret=SECRET, audience="healthinfo")
    good = mint_token(SECRET, sub="u", audience="healthinfo")
    bad = mint_token(SECRET, sub="u", audience="billing")

    assert (await verifier.verify(good)).user_id == "u"
    assert await _rejection(verifier, bad) == BAD_ISSUER_OR_AUDIENCE


async def test_issuer_and_audience_are_ignored_when_not_configured(
    hs_verifier: TokenVerifier,
) -> None:
    token = mint_token(SECRET, sub="u", issuer="https://any.example", audience="anything")

    assert (await hs_verifier.verify(token)).user_id == "u"


# --- JWKS ---------------------------------------------------------------------------------


@pytest.fixture
def jwks_server(rsa_key: rsa.RSAPrivateKey) -> Iterator[tuple[str, list[int]]]:
    """A real HTTP server publishing ``rsa_key`` as kid ``k1``; yields its URL and a hit counter."""
    jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()
    hits = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_rs256_token_is_verified_through_a_jwks_url(
    jwks_server: tuple[str, list[int]], rsa_key: rsa.RSAPrivateKey
) -> None:
    url, hits = jwks_server
    verifier = TokenVerifier(jwks_url=url)
    token = jwt.encode(_claims(roles=["admin"]), rsa_key, algorithm="RS256", headers={"kid": "k1"})

    assert await verifier.verify(token) == Actor("user-1", frozenset({"admin"}))
    assert await verifier.verify(token) == Actor("user-1", frozenset({"admin"}))
    assert hits[0] == 1


async def test_jwks_token_with_unknown_kid_is_rejected(
    jwks_server: tuple[str, list[int]], rsa_key: rsa.RSAPrivateKey
) -> None:
    url, _ = jwks_server
    verifier = TokenVerifier(jwks_url=url)
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "nope"})

    assert await _rejection(verifier, token) == BAD_SIGNATURE


# --- error details and construction -------------------------------------------------------


async def test_error_detail_never_contains_the_token(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(hs_secret=SECRET, issuer="iss", audience="aud")
    tokens = [
        mint_token(OTHER_SECRET, sub="secret-user"),
        mint_token(SECRET, sub="secret-user", now=datetime.now(UTC) - timedelta(days=1)),
        mint_token(SECRET, sub="secret-user", issuer="evil-issuer", audience="aud"),
        _hs(_claims(sub="secret-user", roles="secret-role", iss="iss", aud="aud")),
        jwt.encode(_claims(sub="secret-user"), rsa_key, algorithm="RS256"),
        "not-a-token-secret-user",
    ]
    for token in tokens:
        detail = await _rejection(verifier, token)
        assert token not in detail
        assert not any(part and part in detail for part in token.split("."))
        assert "secret" not in detail
        assert "evil" not in detail


async def test_garbage_is_rejected_as_malformed(hs_verifier: TokenVerifier) -> None:
    assert await _rejection(hs_verifier, "abc.def") == MALFORMED


async def test_oversized_token_is_rejected_as_malformed(hs_verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, sub="u", roles=["r" * 10_000])

    assert await _rejection(hs_verifier, token) == MALFORMED


def test_constructor_without_a_key_source_raises_value_error() -> None:
    with pytest.raises(ValueError, match="Configure"):
        TokenVerifier(issuer="https://id.example")


def test_constructor_refuses_a_short_hs_secret() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenVerifier(hs_secret=b"too-short")


def test_minted_token_omits_roles_when_empty_and_carries_iss_and_aud() -> None:
    token = mint_token(SECRET, sub="u", issuer="iss", audience="aud", ttl_seconds=60)

    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="aud")
    assert set(claims) == {"sub", "iat", "exp", "iss", "aud"}
    assert claims["exp"] - claims["iat"] == 60


# --- remembering verified tokens ------------------------------------------------------------


async def test_a_verified_token_is_not_verified_again_within_the_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(hs_secret=SECRET)
    token = mint_token(SECRET, sub="user-1")
    decodes: list[str] = []
    original = verifier._decode
    monkeypatch.setattr(
        verifier, "_decode", lambda *args: decodes.append("decode") or original(*args)
    )
    first = await verifier.verify(token)
    assert await verifier.verify(token) == first
    assert decodes == ["decode"]


async def test_a_remembered_token_is_verified_again_after_the_minute() -> None:
    now = [time.time()]
    verifier = TokenVerifier(hs_secret=SECRET, clock=lambda: now[0])
    token = mint_token(SECRET, sub="user-1")
    await verifier.verify(token)
    now[0] += 61
    assert verifier._remembered[token][1] < now[0]
    await verifier.verify(token)  # verified anew (still valid), remembered anew
    assert verifier._remembered[token][1] > now[0]


async def test_a_remembered_token_is_refused_once_it_expires() -> None:
    verifier = TokenVerifier(hs_secret=SECRET, leeway_seconds=0)
    issued = datetime.now(UTC) - timedelta(seconds=3599)
    token = mint_token(SECRET, sub="user-1", ttl_seconds=3600, now=issued)  # exp in ~1 s
    assert (await verifier.verify(token)).user_id == "user-1"
    await asyncio.sleep(1.2)
    assert await _rejection(verifier, token) == EXPIRED


async def test_a_token_differing_from_a_remembered_one_is_verified_on_its_own(
    hs_verifier: TokenVerifier,
) -> None:
    token = mint_token(SECRET, sub="user-1")
    await hs_verifier.verify(token)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert await _rejection(hs_verifier, tampered) == BAD_SIGNATURE


async def test_remembered_tokens_are_bounded() -> None:
    verifier = TokenVerifier(hs_secret=SECRET, remember_tokens=3)
    tokens = [mint_token(SECRET, sub=f"user-{i}") for i in range(5)]
    for token in tokens:
        await verifier.verify(token)
    assert list(verifier._remembered) == tokens[2:]
