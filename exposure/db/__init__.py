"""Database plumbing shared by every service.

- :mod:`exposure.db.engine`: engines from a URL, with the SQLite pragmas we rely on.
- :mod:`exposure.db.unit_of_work`: the caller-owned transaction (services never commit).
- :mod:`exposure.db.base`: the declarative base, naming convention and UTC time column.
- :mod:`exposure.db.lease`: leases that serialize jobs across processes and replicas.
- :mod:`exposure.db.migrate`: Alembic, driven from code (``exposure db upgrade``).
"""

from exposure.db.base import Base, UTCDateTime
from exposure.db.engine import create_database_engine
from exposure.db.unit_of_work import SessionFactory, make_session_factory, unit_of_work

__all__ = [
    "Base",
    "SessionFactory",
    "UTCDateTime",
    "create_database_engine",
    "make_session_factory",
    "unit_of_work",
]
