"""The unit of work: the edge (a request handler or the job runner) owns the transaction.

Service and store code receive a :class:`~sqlalchemy.orm.Session` and never call
``commit()``; the ``with unit_of_work(...)`` block commits when it ends normally and rolls
back when an exception leaves it, so two writes that must be atomic always are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeAlias

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

SessionFactory: TypeAlias = sessionmaker[Session]


def make_session_factory(engine: Engine) -> SessionFactory:
    """Sessions bound to ``engine`` that keep loaded objects usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(session_factory: SessionFactory) -> Iterator[Session]:
    """Open a session in a transaction; commit on success, roll back on any exception."""
    with session_factory() as session, session.begin():
        yield session


@contextmanager
def autocommit(session_factory: SessionFactory) -> Iterator[Connection]:
    """A connection on which every statement is a transaction of its own, committed at once.

    For writes that must stick whatever happens next, such as rate-limit counters: each
    costs one round trip (no BEGIN, no COMMIT), and the row lock it takes is released when
    the statement ends rather than held for the rest of a longer transaction, where every
    request of one client would queue behind it.
    """
    engine: Engine = session_factory.kw["bind"]
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection
