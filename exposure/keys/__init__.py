"""Private keys and secrets of each service, sealed in its own database under its KEK.

- :mod:`exposure.keys.keystore`: the :class:`KeyStore` protocol the services sign through,
  and :class:`ServiceKeyStore`, which keeps keys and secrets in ``sealed_keys``.
- :mod:`exposure.keys.kek`: where a service's key-encryption keys come from.
- :mod:`exposure.keys.legacy`: moves keys that earlier versions kept in files into the
  database (``exposure db upgrade``).
"""

from exposure.keys.errors import (
    KeyEncryptionKeyMissing,
    KeyNotFound,
    KeysDoNotOpen,
    KeysUnavailable,
)
from exposure.keys.keystore import KeyStore, SealedKeyInfo, ServiceKeyStore

__all__ = [
    "KeyEncryptionKeyMissing",
    "KeyNotFound",
    "KeyStore",
    "KeysDoNotOpen",
    "KeysUnavailable",
    "SealedKeyInfo",
    "ServiceKeyStore",
]
