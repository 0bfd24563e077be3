"""Bearer-token (JWT) verification, and minting for development and tests.

Why the rules are this strict:

* **The algorithm family is chosen from the header before any key is picked, and each family
  has its own keys.** A JWT names its own algorithm, so a verifier that hands "the configured
  key" to whatever algorithm the header asks for can be tricked: a token declaring ``HS256``
  and MAC-ed with the RSA *public* key (which anyone may hold) would verify, because the
  public key's PEM bytes become the HMAC secret (the classic algorithm-confusion attack). So
  an HS256 token is only ever checked against ``hs_secret``, and RS256 / ES256 tokens only
  against RSA / P-256 public keys, whose objects cannot serve as an HMAC secret.
* **Only HS256, RS256 and ES256 are accepted.** ``alg: none`` (an unsigned token that claims
  to need no verification) and every other algorithm are refused outright; a short allow-list
  is what keeps a permissive default from ever re-opening that door.
* **Keys come only from configuration.** Header members that carry or point to keys (``jwk``,
  ``jku``, ``x5u``, ``x5c``) are ignored: a key supplied by the token proves nothing.
* **``exp`` and ``sub`` are required.** A token without an expiry is a password that never
  changes; a token without a subject names nobody.
* **Error details are fixed sentences.** They go back to an unauthenticated caller and into
  logs, so they never carry the token or any claim or header value, and PyJWT's own messages
  (which may quote header values) are not chained onto them.

* **A verified token is remembered briefly.** Checking a signature and the claims costs more
  CPU than the rest of a cached read's authentication; clients send the same token with every
  request. So a token that verified is taken as verified again, matched byte for byte, for at
  most ``REMEMBER_SECONDS`` and never past its own ``exp``: an expired token is refused as
  before, and a JWKS key the identity provider withdraws stops being honoured within the
  JWKS cache's lifetime, as before. Failures are never remembered.

The HMAC secret must be at least 32 bytes and RSA keys at least 2048 bits (RFC 7518 §3.2,
NIST SP 800-131A); weaker keys are refused when the verifier is built rather than warned
about on every request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from healthinfo.auth.actor import Actor
from healthinfo.common.identifiers import is_printable
from healthinfo.errors import Unauthenticated

__all__ = ["TokenVerifier", "mint_token", "pem_key_id"]

HMAC_ALGORITHM = "HS256"
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})
MIN_HS_SECRET_BYTES = 32
MIN_RSA_KEY_BITS = 2048
MAX_TOKEN_LENGTH = 8192
MAX_SUBJECT_LENGTH = 255
JWKS_FETCH_TIMEOUT_SECONDS = 5.0
REMEMBER_SECONDS = 60.0
REMEMBER_TOKENS = 4096

EXPIRED = "The token has expired."
NOT_YET_VALID = "The token is not yet valid."
BAD_SIGNATURE = "The token signature is invalid."
MALFORMED = "The token is malformed."
BAD_ALGORITHM = "The token's algorithm is not accepted."
BAD_ISSUER_OR_AUDIENCE = "The token's issuer/audience is not accepted."
MISSING_CLAIM = "The token lacks a required claim."
KEYS_UNAVAILABLE = "The token's signing keys cannot be fetched right now."

PublicKey = RSAPublicKey | EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class _ConfiguredKey:
    """A configured public key and its RFC 7638 thumbprint, which serves as its ``kid``."""

    kid: str
    key: PublicKey


class TokenVerifier:
    """Turns a bearer token into an :class:`Actor`, or raises :class:`Unauthenticated`.

    Build one per process: it holds the parsed keys and the JWKS client whose cache spares the
    identity provider a request per call.
    """

    def __init__(
        self,
        *,
        hs_secret: bytes | None = None,
        public_keys_pem: Sequence[str] = (),
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: int = 30,
        jwks_cache_seconds: int = 300,
        remember_tokens: int = REMEMBER_TOKENS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if hs_secret is None and not public_keys_pem and jwks_url is None:
            raise ValueError("Configure hs_secret, public_keys_pem or jwks_url.")
        if leeway_seconds < 0:
            raise ValueError("leeway_seconds must not be negative.")
        if hs_secret is not None:
            _check_hs_secret(hs_secret)
        self._hs_secret = hs_secret
        self._public_keys = tuple(_load_public_key(pem) for pem in public_keys_pem)
        self._jwks = None if jwks_url is None else _jwks_client(jwks_url, jwks_cache_seconds)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._remembered: OrderedDict[str, tuple[Actor, float]] = OrderedDict()
        self._remember_limit = remember_tokens
        self._clock = clock

    async def verify(self, token: str) -> Actor:
        """Verify signature and claims; the result is the caller the token names."""
        remembered = self._remembered.get(token)
        if remembered is not None:
            actor, until = remembered
            if self._clock() < until:
                self._remembered.move_to_end(token)
                return actor
            del self._remembered[token]
        header = _read_header(token)
        algorithm = _accepted_algorithm(header)
        if algorithm == HMAC_ALGORITHM:
            claims = self._decode(token, self._require_hs_secret(), algorithm)
        else:
            keys = await self._asymmetric_keys(algorithm, header.get("kid"))
            claims = self._decode_with_any(token, keys, algorithm)
        actor = _actor_from(claims, leeway_seconds=self._leeway)
        self._remember(token, actor, claims)
        return actor

    def _remember(self, token: str, actor: Actor, claims: dict[str, Any]) -> None:
        """Until ``exp`` (PyJWT checked it is a number) or ``REMEMBER_SECONDS``, the sooner."""
        until = min(float(claims["exp"]), self._clock() + REMEMBER_SECONDS)
        self._remembered[token] = (actor, until)
        self._remembered.move_to_end(token)
        while len(self._remembered) > self._remember_limit:
            self._remembered.popitem(last=False)

    def _require_hs_secret(self) -> bytes:
        # Without a configured secret an HS256 token has nothing legitimate to be checked
        # against; falling back to a public key is exactly the confusion attack.
        if self._hs_secret is None:
            raise Unauthenticated(BAD_ALGORITHM)
        return self._hs_secret

    async def _asymmetric_keys(self, algorithm: str, kid: str | None) -> list[PublicKey]:
        """The PEM key whose thumbprint is ``kid``, else every fitting PEM and JWKS key.

        Falling back to all PEM keys lets an issuer name its keys its own way ("2025-01"); it
        costs nothing in safety, since the signature must still verify against a configured key.
        """
        configured = [k for k in self._public_keys if _fits(k.key, algorithm)]
        named = [k.key for k in configured if kid is not None and k.kid == kid]
        if named:
            return named
        keys = [k.key for k in configured]
        if self._jwks is not None:
            fetched = await asyncio.to_thread(_fetch_jwks_keys, self._jwks, kid)
            keys += [key for key in fetched if _fits(key, algorithm)]
        if not keys:
            raise Unauthenticated(BAD_SIGNATURE if self._jwks is not None else BAD_ALGORITHM)
        return keys

    def _decode_with_any(self, token: str, keys: list[PublicKey], algorithm: str) -> dict[str, Any]:
        # Only a signature mismatch moves on to the next key: any later failure (expiry,
        # audience...) means the signature held, so that is the answer.
        for key in keys[:-1]:
            try:
                return self._decode(token, key, algorithm)
            except Unauthenticated as exc:
                if exc.detail != BAD_SIGNATURE:
                    raise
        return self._decode(token, keys[-1], algorithm)

    def _decode(self, token: str, key: PublicKey | bytes, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options={
                    "require": ["exp", "sub"],
                    "verify_iss": self._issuer is not None,
                    "verify_aud": self._audience is not None,
                },
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_detail_for(exc)) from None
        return claims


def mint_token(
    secret: bytes,
    *,
    sub: str,
    roles: Sequence[str] = (),
    ttl_seconds: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    now: datetime | None = None,
) -> str:
    """Sign an HS256 token; for the development ``healthinfo token`` command and for tests.

    Production tokens come from the identity provider; this exists so a developer can call the
    service without one. ``now`` lets tests mint tokens that are already expired.
    """
    _check_hs_secret(secret)
    if not sub:
        raise ValueError("sub must not be empty.")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive.")
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": sub,
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl_seconds),
    }
    if roles:
        claims["roles"] = list(roles)
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=HMAC_ALGORITHM)


def pem_key_id(public_key_pem: str) -> str:
    """The ``kid`` under which a PEM key is matched: its RFC 7638 JWK thumbprint.

    A PEM file carries no key id, and the thumbprint is the one an issuer can compute from the
    key alone, so a token signer and this verifier agree on it without extra configuration.
    """
    return _load_public_key(public_key_pem).kid


def _check_hs_secret(secret: bytes) -> None:
    if len(secret) < MIN_HS_SECRET_BYTES:
        raise ValueError(f"The HS256 secret must be at least {MIN_HS_SECRET_BYTES} bytes.")


def _load_public_key(pem: str) -> _ConfiguredKey:
    key = load_pem_public_key(pem.encode("ascii"))
    if isinstance(key, RSAPublicKey):
        if key.key_size < MIN_RSA_KEY_BITS:
            raise ValueError(f"RSA public keys must be at least {MIN_RSA_KEY_BITS} bits.")
        return _ConfiguredKey(_thumbprint(key), key)
    if isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
        return _ConfiguredKey(_thumbprint(key), key)
    raise ValueError("Public keys must be RSA or EC P-256 (for RS256 / ES256).")


def _thumbprint(key: PublicKey) -> str:
    members: tuple[str, ...]
    if isinstance(key, RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
        members = ("e", "kty", "n")
    else:
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
        members = ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _jwks_client(url: str, cache_seconds: int) -> jwt.PyJWKClient:
    if cache_seconds <= 0:
        raise ValueError("jwks_cache_seconds must be positive.")
    # The key-set cache expires after ``lifespan``, so a key the provider withdraws stops
    # verifying within that time; the per-kid cache (``cache_keys``) never expires, so it
    # stays off.
    try:
        return jwt.PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=cache_seconds,
            cache_keys=False,
            timeout=JWKS_FETCH_TIMEOUT_SECONDS,
        )
    except jwt.PyJWKClientError as exc:
        raise ValueError(f"Unusable jwks_url: {exc}") from None


def _read_header(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthenticated(MALFORMED)
    try:
        header: dict[str, Any] = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated(MALFORMED) from None
    return header


def _accepted_algorithm(header: dict[str, Any]) -> str:
    algorithm = header.get("alg")
    if algorithm == HMAC_ALGORITHM or algorithm in ASYMMETRIC_ALGORITHMS:
        return str(algorithm)
    raise Unauthenticated(BAD_ALGORITHM)


def _fetch_jwks_keys(client: jwt.PyJWKClient, kid: str | None) -> list[PublicKey]:
    """Blocking: may fetch the key set over HTTP, so it runs in a worker thread."""
    try:
        jwks = [client.get_signing_key(kid)] if kid is not None else client.get_signing_keys()
    except jwt.PyJWKClientConnectionError:
        raise Unauthenticated(KEYS_UNAVAILABLE) from None
    except jwt.PyJWTError:
        # Unknown kid, or a key set without usable keys: the key set vouches for nothing.
        return []
    # ``oct`` (symmetric) entries in a key set are bytes and fall out here, so a JWKS cannot
    # smuggle an HMAC secret in.
    return [jwk.key for jwk in jwks if isinstance(jwk.key, RSAPublicKey | EllipticCurvePublicKey)]


def _fits(key: PublicKey, algorithm: str) -> bool:
    if algorithm == "RS256":
        return isinstance(key, RSAPublicKey) and key.key_size >= MIN_RSA_KEY_BITS
    return isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1)


_DETAILS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    # Order matters: InvalidSignatureError is a DecodeError.
    (jwt.ExpiredSignatureError, EXPIRED),
    (jwt.ImmatureSignatureError, NOT_YET_VALID),
    (jwt.InvalidSignatureError, BAD_SIGNATURE),
    (jwt.InvalidKeyError, BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, BAD_ALGORITHM),
    (jwt.InvalidIssuerError, BAD_ISSUER_OR_AUDIENCE),
    (jwt.InvalidAudienceError, BAD_ISSUER_OR_AUDIENCE),
    (jwt.MissingRequiredClaimError, MISSING_CLAIM),
)


def _detail_for(exc: jwt.PyJWTError) -> str:
    for kind, detail in _DETAILS:
        if isinstance(exc, kind):
            return detail
    return MALFORMED


def _actor_from(claims: dict[str, Any], *, leeway_seconds: int) -> Actor:
    """``expires_at`` is when this verifier starts refusing the token (``exp`` + leeway), so a
    stream ended at it cannot be reopened with the same token."""
    expires_at = float(claims["exp"]) + leeway_seconds
    return Actor(user_id=_subject(claims), roles=_roles(claims), expires_at=expires_at)


def _subject(claims: dict[str, Any]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str):
        raise Unauthenticated(MALFORMED)
    if not sub.strip():
        raise Unauthenticated(MISSING_CLAIM)
    if len(sub) > MAX_SUBJECT_LENGTH or not is_printable(sub):
        raise Unauthenticated(MALFORMED)  # a user id with control characters names nobody
    return sub


def _roles(claims: dict[str, Any]) -> frozenset[str]:
    roles = claims.get("roles")
    if roles is None:
        return frozenset()
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise Unauthenticated(MALFORMED)
    return frozenset(roles)
