"""Build the key store and codecs from settings (shared by the app, the worker and the CLI)."""

from __future__ import annotations

from healthinfo.common.database import create_engines
from healthinfo.config import Settings
from healthinfo.crypto.codec import EncryptedAnswerCodec, EncryptedPayloadCodec
from healthinfo.crypto.keystore import KeyStore


def build_keystore(settings: Settings) -> KeyStore:
    if settings.effective_keystore_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engines = create_engines(
        settings.effective_keystore_url,
        pool_size=5,
        max_overflow=5,
        timeout=settings.db_timeout_seconds,
    )
    return KeyStore(engines, settings.keyring())


def payload_codec(keystore: KeyStore) -> EncryptedPayloadCodec:
    return EncryptedPayloadCodec(EncryptedAnswerCodec(keystore))
