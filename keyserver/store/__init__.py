"""The key server's SQL: every query on its tables lives in this package, one module per kind.

- :mod:`~keyserver.store.exposures`: publishing stored keys (lock, insert, revise).
- :mod:`~keyserver.store.trust`: health authorities, their keys, authorized apps.
- :mod:`~keyserver.store.revision_keys`: the keys that seal revision tokens.
- :mod:`~keyserver.store.export_configs`: export configurations and signature infos.
- :mod:`~keyserver.store.exports`: export batches, their leases and files, a window's keys.
- :mod:`~keyserver.store.retention`: what each retention purge deletes, and the oldest item.

Callers own the transaction: functions take their session (or a session factory, for the
purges that commit batch by batch) and never commit. The service, export, job and
retention modules call these functions and hold no SQL of their own.
"""
