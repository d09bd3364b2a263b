"""What every key-server use case needs besides a session: settings, caches, secrets."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from crypto.sealing import Keyring
from exposure.db import SessionFactory
from exposure.keys import KeyStore
from keyserver.export.blobstore import BlobStore
from keyserver.service.publish import RevisionSecrets
from keyserver.service.revision_keys import RevisionKeyCache
from keyserver.service.trust import TrustCache
from keyserver.settings import KeyserverSettings

_logger = logging.getLogger(__name__)

#: The purpose of the sealed secret that is every revision token's authenticated data.
REVISION_TOKEN_AAD = "revision-token-aad"  # noqa: S105 - a purpose name, not a secret


@dataclass(frozen=True)
class KeyserverContext:
    """Built once per process at start-up (by :mod:`keyserver.bundle`) and passed to the
    handlers and jobs."""

    settings: KeyserverSettings
    session_factory: SessionFactory
    trust: TrustCache
    #: Authenticated data of every revision token: a token only opens on this deployment.
    revision_aad: bytes
    #: Seals the revision keys at rest (derived from the key server's KEKs).
    revision_wrapping: Keyring
    revision_keys: RevisionKeyCache
    #: Where export files and index.txt are written (filesystem or S3).
    export_store: BlobStore
    #: The private keys that sign export files.
    key_store: KeyStore

    @classmethod
    def create(
        cls,
        settings: KeyserverSettings,
        session_factory: SessionFactory,
        *,
        revision_wrapping: Keyring,
        revision_aad: bytes,
        key_store: KeyStore,
        export_store: BlobStore,
    ) -> KeyserverContext:
        """A context whose revision keys are sealed under ``revision_wrapping``."""
        if settings.throwaway_demo_timing:
            # Said at every start, so that it cannot go unnoticed in a real deployment's logs.
            _logger.warning(
                "throwaway demo timing is on: created_at is kept to the second and export "
                "windows close 2 s after they end; never use this where real people upload"
            )
        return cls(
            settings=settings,
            session_factory=session_factory,
            trust=TrustCache(session_factory, ttl=settings.cache_duration),
            revision_aad=revision_aad,
            revision_wrapping=revision_wrapping,
            revision_keys=RevisionKeyCache(revision_wrapping),
            export_store=export_store,
            key_store=key_store,
        )

    def revision_secrets(self, now: datetime) -> RevisionSecrets:
        """The current revision keyring (cached briefly) and the token AAD."""
        return RevisionSecrets(self.revision_keys.get(self.session_factory, now), self.revision_aad)
