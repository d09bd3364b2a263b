"""What a service contributes to a process: the one shape every service is composed in.

Each service package builds its :class:`ServiceBundle` in one place (``keyserver.bundle``,
``verification.bundle``) from its settings, its database and its keys: its context, its
routers, its scheduled jobs, its retention (policies, log key, purge job), its readiness
checks and how it recognizes an auditor. The HTTP app factory, every CLI command and the
benchmarks open bundles through :mod:`exposure.compose` and use only what is here; a new
capability of a service (importing peers' keys, a staff console) is added to its bundle
and reaches every process from there.

Routers are built on demand: a CLI command never needs them, nor the web framework.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from exposure.db import SessionFactory
from exposure.jobs import Job
from exposure.keys import ServiceKeyStore
from exposure.retention.runtime import ServiceRetention
from exposure.settings import ExposureSettings, Service

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = [
    "OK",
    "Clock",
    "ReadinessCheck",
    "ServiceBundle",
    "ServiceResources",
]

Clock = Callable[[], datetime]

#: What a readiness probe answers when its part is ready; anything else is a reason code.
OK = "ok"


@dataclass(frozen=True)
class ReadinessCheck:
    """One part a process needs before it can serve: ``probe`` answers :data:`OK` or a
    short, stable reason code (``unreachable``, ``not_migrated``, ...), never raises and
    never says more (the reason is logged where it is found)."""

    name: str
    probe: Callable[[], str]


@dataclass(frozen=True)
class ServiceResources:
    """What the composition hands a service's bundle builder: opened and checked."""

    service: Service
    settings: ExposureSettings
    engine: Engine
    session_factory: SessionFactory
    #: The service's private keys and secrets; every stored key was opened at start-up.
    keys: ServiceKeyStore
    clock: Clock


@dataclass(frozen=True, kw_only=True)
class ServiceBundle:
    """One service, wired: everything a process needs to serve it, run its jobs, purge its
    data and tell whether it is ready."""

    service: Service
    resources: ServiceResources
    retention: ServiceRetention
    #: Its periodic jobs (retention purge included), in the order they are listed.
    jobs: tuple[Job, ...]
    #: Its own readiness checks, beyond the database, schema and keys the composition checks.
    readiness: tuple[ReadinessCheck, ...]
    #: Routes whose ``X-Chaff`` requests are answered like real ones by this service.
    chaff_paths: tuple[str, ...]
    #: The HTTP routes of the service (built on demand; the clock is the one requests see).
    routers: Callable[[Clock], Sequence[APIRouter]]
    #: Whether an API key may read this service's retention log and compliance report.
    authorize_auditor: Callable[[str], bool]
    #: Re-seal every key the service keeps under its newest KEK (after a KEK rotation);
    #: returns how many were re-sealed. The caller owns the transaction.
    reseal_keys: Callable[[Session], int]
    #: Names (prefixes) of its metrics that move with single requests: shown only as they
    #: stood at the last release (exposure.metrics).
    per_request_metrics: tuple[str, ...] = ()

    @property
    def session_factory(self) -> SessionFactory:
        return self.resources.session_factory

    @property
    def keys(self) -> ServiceKeyStore:
        return self.resources.keys
