"""Master keys: several, with ids, so they can be rotated; the last one wraps new data keys.

``HEALTHINFO_MASTER_KEYS`` is ``id:base64url-32-bytes[,id:…]``. With nothing configured (and
not in production) a key is generated once into ``<data dir>/master-keys`` (mode 0600).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from pathlib import Path

KEY_BYTES = 32
MASTER_KEYS_FILE = "master-keys"


class MasterKeyError(ValueError):
    pass


@dataclass(frozen=True)
class MasterKeyring:
    keys: dict[str, bytes]
    active_id: str

    @property
    def active(self) -> bytes:
        return self.keys[self.active_id]

    def get(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise MasterKeyError(f"master key {key_id!r} is not configured") from None

    @classmethod
    def parse(cls, spec: str) -> MasterKeyring:
        keys = parse_keys(spec, what="master key")
        return cls(keys, active_id=list(keys)[-1])


def parse_keys(spec: str, *, what: str) -> dict[str, bytes]:
    """``id:base64url-32-bytes[,id:…]`` in order; shared by the master and the audit keys."""
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key_id, _, encoded = part.partition(":")
        if not key_id or not encoded:
            raise MasterKeyError(f"each {what} is 'id:base64url-of-32-bytes'")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise MasterKeyError(f"{what} {key_id!r} is not base64url") from None
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"{what} {key_id!r} must be {KEY_BYTES} bytes")
        if key_id in keys:
            raise MasterKeyError(f"{what} id {key_id!r} appears twice")
        keys[key_id] = key
    if not keys:
        raise MasterKeyError(f"no {what}")
    return keys


def new_key_spec(key_id: str) -> str:
    return (
        f"{key_id}:{base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip('=')}"
    )


def generated_keyring(data_dir: Path) -> MasterKeyring:
    return MasterKeyring.parse(generated_spec(data_dir / MASTER_KEYS_FILE))


def generated_spec(path: Path) -> str:
    """A one-key spec generated once into ``path`` (mode 0600), for development only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("x", encoding="ascii") as handle:
                path.chmod(0o600)
                handle.write(new_key_spec("k1"))
        except FileExistsError:
            pass
    return path.read_text(encoding="ascii")
