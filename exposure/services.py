"""Composition of the services' retention with the core (the app factory and CLI use it).

Like the app factory, this module may import the services: it assembles each service's
policies (its own plus the core tables of its database), its log key and its database into
one :class:`~exposure.retention.runtime.ServiceRetention`.
"""

from __future__ import annotations

from pathlib import Path

from exposure.db import SessionFactory
from exposure.retention.core import core_policies
from exposure.retention.keys import load_log_signers, log_key_path
from exposure.retention.runtime import ServiceRetention
from exposure.retention.settings import RetentionSettings
from exposure.settings import Service
from keyserver.context import KeyserverContext
from keyserver.retention import keyserver_policies
from verification.context import VerificationContext
from verification.retention import verification_policies

__all__ = ["keyserver_retention", "verification_retention"]


def keyserver_retention(
    context: KeyserverContext, settings: RetentionSettings, data_dir: Path
) -> ServiceRetention:
    signer, *previous = load_log_signers(
        settings.keyserver_log_key, log_key_path(data_dir, Service.KEYSERVER.value)
    )
    return ServiceRetention(
        service=Service.KEYSERVER,
        policies=(
            *keyserver_policies(context, settings),
            *core_policies(Service.KEYSERVER, settings),
        ),
        session_factory=context.session_factory,
        signer=signer,
        settings=settings,
        previous_public_keys=tuple(key.public_key for key in previous),
    )


def verification_retention(
    context: VerificationContext,
    session_factory: SessionFactory,
    settings: RetentionSettings,
    data_dir: Path,
) -> ServiceRetention:
    signer, *previous = load_log_signers(
        settings.verification_log_key, log_key_path(data_dir, Service.VERIFICATION.value)
    )
    return ServiceRetention(
        service=Service.VERIFICATION,
        policies=(
            *verification_policies(context, settings),
            *core_policies(Service.VERIFICATION, settings),
        ),
        session_factory=session_factory,
        signer=signer,
        settings=settings,
        previous_public_keys=tuple(key.public_key for key in previous),
    )
