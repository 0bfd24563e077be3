"""The audit key ring: HMAC keys held outside the database, which key the chains and checkpoints.

``HEALTHINFO_AUDIT_KEYS`` has the master keys' format, ``id:base64url-32-bytes[,id:…]``, and
rotates the same way: append a new key and it links every new event and signs every new
checkpoint; keep the old ones, which verify what they linked (each event records its key id).
With nothing configured (and not in production) a key is generated once into
``<data dir>/audit-keys`` (mode 0600). Someone who can write the database but not read this key
cannot recompute a link, so can neither alter, insert nor remove events unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from healthinfo.crypto.master_keys import MasterKeyError, generated_spec, parse_keys

AUDIT_KEYS_FILE = "audit-keys"


class AuditKeyError(MasterKeyError):
    pass


@dataclass(frozen=True)
class AuditKeyring:
    keys: dict[str, bytes]
    active_id: str

    @classmethod
    def parse(cls, spec: str) -> AuditKeyring:
        try:
            keys = parse_keys(spec, what="audit key")
        except MasterKeyError as exc:
            raise AuditKeyError(str(exc)) from None
        return cls(keys, active_id=list(keys)[-1])

    @classmethod
    def generated(cls, data_dir: Path) -> AuditKeyring:
        return cls.parse(generated_spec(data_dir / AUDIT_KEYS_FILE))

    def has(self, key_id: str) -> bool:
        return key_id in self.keys

    def mac(self, key_id: str, message: bytes) -> str:
        """Hex HMAC-SHA256 of ``message`` with key ``key_id`` (``AuditKeyError`` if unknown)."""
        try:
            key = self.keys[key_id]
        except KeyError:
            raise AuditKeyError(f"audit key {key_id!r} is not configured") from None
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def matches(self, key_id: str, message: bytes, tag: str | None) -> bool:
        """Constant-time check of ``tag``; false for an unknown key id."""
        if tag is None or key_id not in self.keys:
            return False
        return hmac.compare_digest(self.mac(key_id, message), tag)
