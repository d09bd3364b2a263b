"""What every key-server use case needs besides a session: settings, caches, secrets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from crypto.encoding import decode_base64_lenient
from crypto.keystore import FileKeyStore, KeyStore
from crypto.sealing import Keyring
from exposure.db import SessionFactory
from exposure.secrets import load_or_create_secret_keys
from keyserver.export.blobstore import BlobStore, blob_store_from_settings
from keyserver.service.publish import RevisionSecrets
from keyserver.service.revision_keys import RevisionKeyCache, wrapping_keyring
from keyserver.service.trust import TrustCache
from keyserver.settings import KeyserverSettings


@dataclass(frozen=True)
class KeyserverContext:
    """Built once per process at start-up and passed to the handlers and jobs."""

    settings: KeyserverSettings
    session_factory: SessionFactory
    trust: TrustCache
    #: Authenticated data of every revision token: a token only opens on this deployment.
    revision_aad: bytes
    #: Seals the revision keys at rest (derived from the server's revision secrets).
    revision_wrapping: Keyring
    revision_keys: RevisionKeyCache
    #: Where export files and index.txt are written (filesystem or S3).
    export_store: BlobStore
    #: The private keys that sign export files.
    key_store: KeyStore

    @classmethod
    def from_settings(
        cls, settings: KeyserverSettings, data_dir: Path, session_factory: SessionFactory
    ) -> KeyserverContext:
        secrets_dir = data_dir / "secrets"
        if settings.revision_token_aad is not None:
            aad = decode_base64_lenient(settings.revision_token_aad.get_secret_value())
        else:
            aad = load_or_create_secret_keys(None, secrets_dir / "keyserver-revision-aad")[0]
        configured = (
            settings.revision_secrets.get_secret_value() if settings.revision_secrets else None
        )
        wrapping = wrapping_keyring(
            load_or_create_secret_keys(configured, secrets_dir / "keyserver-revision.keys")
        )
        return cls(
            settings=settings,
            session_factory=session_factory,
            trust=TrustCache(session_factory, ttl=settings.cache_duration),
            revision_aad=aad,
            revision_wrapping=wrapping,
            revision_keys=RevisionKeyCache(wrapping),
            export_store=blob_store_from_settings(settings, data_dir),
            key_store=FileKeyStore(data_dir / "keys" / "keyserver"),
        )

    def revision_secrets(self, now: datetime) -> RevisionSecrets:
        """The current revision keyring (cached briefly) and the token AAD."""
        return RevisionSecrets(self.revision_keys.get(self.session_factory, now), self.revision_aad)
