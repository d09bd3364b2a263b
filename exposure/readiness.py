"""Readiness probes shared by every service: its database, its schema, its keys.

A probe answers ``ok`` or a short reason code and never raises: ``/health/ready`` turns the
answers into a 503 with one code per failing part, and a load balancer stops sending
traffic. The cause is logged (at warning, without values) where it is found.

Reason codes:

- ``unreachable``: the database did not answer (down, refused, wrong address or password);
- ``database_missing``: the server answered, but the database in the URL does not exist;
- ``permission_denied``: the role may not read the schema version;
- ``not_migrated``: it answered, but holds no schema for this service;
- ``schema_behind``: the schema is older than this version's (run ``exposure db upgrade``);
- ``schema_ahead``: a newer version migrated it (finish rolling that version out);
- ``keys_sealed_under_unknown_kek``: a key in the database was sealed under a KEK this
  process is not configured with (a key made by a process with another KEK).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from exposure.bundle import OK
from exposure.db.faults import DatabaseFault, classify
from exposure.db.migrate import SchemaState, schema_state
from exposure.keys import ServiceKeyStore
from exposure.settings import Service

__all__ = ["cached_probe", "service_state"]

_logger = logging.getLogger(__name__)


def service_state(service: Service, engine: Engine, keys: ServiceKeyStore) -> dict[str, str]:
    """The ``database`` and ``keys`` checks of ``service``, from one query: the schema
    versions the database records and the KEK ids its sealed keys name. One round trip per
    service database, as cheap as the ``SELECT 1`` a liveness check would cost."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(_STATE, {"service": service.value}).all()
    except SQLAlchemyError as error:
        fault = classify(error)
        _logger.warning("readiness: the %s database: %s", service, fault.value)
        reason = fault.value if fault is not DatabaseFault.OTHER else "unreachable"
        return {"database": reason, "keys": reason}
    heads = {value for kind, value in rows if kind == "schema"}
    state = schema_state(heads, service)
    if state is SchemaState.NOT_MIGRATED:
        database = DatabaseFault.NOT_MIGRATED.value
    elif state is not SchemaState.CURRENT:
        _logger.warning("readiness: the %s schema is %s", service, state.value)
        database = f"schema_{state.value}"
    else:
        database = OK
    unknown = {value for kind, value in rows if kind == "kek"} - keys.kek_ids
    if unknown:
        _logger.warning("readiness: %s keys are sealed under an unknown KEK", service)
    return {"database": database, "keys": "keys_sealed_under_unknown_kek" if unknown else OK}


#: Both facts in one statement (both engines): the schema's versions, then the KEK ids.
_STATE = text(
    "SELECT 'schema', version_num FROM alembic_version "
    "UNION ALL "
    "SELECT DISTINCT 'kek', kek_id FROM sealed_keys WHERE service = :service"
)


def cached_probe(probe: Callable[[], str], seconds: float) -> Callable[[], str]:
    """``probe``, answered from its last result for ``seconds`` (for probes that cost a
    remote round trip); thread-safe, one probe at a time."""
    lock = threading.Lock()
    last: list[tuple[float, str]] = []

    def cached() -> str:
        with lock:
            now = time.monotonic()
            if last and now - last[0][0] < seconds:
                return last[0][1]
            answer = probe()
            last[:] = [(now, answer)]
            return answer

    return cached
