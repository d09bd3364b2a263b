"""The verification service's retention declarations and the purges that enforce them.

Deadlines follow Google's verification server (verification-and-peers.md §1.10): a code's
hashes are blanked 48 hours after it expires (the row keeps only what the lab's status
check and the issuing statistics need) and the row is deleted 14 days after expiry; a
token goes 24 hours after it expires; audit entries after 30 days; signing keys 36 hours
after retirement, together with their sealed private key; disabled API keys after 14 days
(once no code names them); console sessions a day after they expire and disabled staff
accounts after 30 days. Realms are configuration and stay until an operator removes them.
The statements behind each purge are in :mod:`verification.store`.

Example::

    policies = verification_policies(context, RetentionSettings())
"""

from __future__ import annotations

from datetime import datetime

from exposure.db import SessionFactory, unit_of_work
from exposure.retention.core import purge_job_name
from exposure.retention.policy import Action, PurgeResult, RetentionPolicy
from exposure.retention.settings import (
    AUDIT_ENTRIES,
    CODE_VALUES,
    CODES,
    DISABLED_API_KEYS,
    DISABLED_STAFF,
    RETIRED_SIGNING_KEYS,
    STAFF_SESSIONS,
    TOKENS,
    RetentionSettings,
)
from exposure.settings import Service
from verification import store
from verification.console import store as console_store
from verification.context import VerificationContext

__all__ = ["verification_policies"]


def verification_policies(
    context: VerificationContext, settings: RetentionSettings
) -> list[RetentionPolicy]:
    """Every declaration of the verification tables, with deadlines from settings."""
    batch = settings.batch_size
    job = purge_job_name(Service.VERIFICATION)

    def delete_signing_keys(
        sessions: SessionFactory, cutoff: datetime, _now: datetime
    ) -> PurgeResult:
        # The rows and their sealed private keys go in one transaction: neither outlives
        # the other.
        with unit_of_work(sessions) as session:
            retired = store.signing_keys_retired_before(session, cutoff)
            if not retired:
                return PurgeResult(rows=0)
            destroyed = sum(
                int(context.key_store.destroy(session, reference)) for _id, reference in retired
            )
            rows = store.delete_signing_keys(session, [key_id for key_id, _ in retired])
        context.caches.signing_keys.clear()
        return PurgeResult(rows=rows, blobs=destroyed)

    def delete_api_keys(sessions: SessionFactory, cutoff: datetime, _now: datetime) -> PurgeResult:
        # A key still named by a code row waits for that row's own deadline.
        rows = store.delete_disabled_api_keys(sessions, cutoff, batch)
        if rows:
            context.caches.api_keys.clear()
        return PurgeResult(rows=rows)

    service = Service.VERIFICATION
    return [
        RetentionPolicy(
            kind="verification-code-values",
            service=service,
            tables=("verification_codes",),
            purpose=(
                "Keyed hashes of the short and long codes, so a phone can redeem the code a "
                "lab gave; no use once the code expired."
            ),
            measured_from="the code's expiry (the later of expires_at and long_expires_at)",
            action=Action.BLANK,
            bounds=CODE_VALUES,
            deadline=settings.code_values,
            setting="EXPOSURE_RETENTION_CODE_VALUES",
            enforced_by=job,
            purge=store.blank_expired_code_hashes(batch),
            oldest=store.oldest_code_hash,
        ),
        RetentionPolicy(
            kind="verification-codes",
            service=service,
            tables=("verification_codes",),
            purpose=(
                "The code record (test type, dates, claimed or not) for the lab's status "
                "check and expiry; names no person."
            ),
            measured_from="the code's expiry (the later of expires_at and long_expires_at)",
            action=Action.DELETE,
            bounds=CODES,
            deadline=settings.codes,
            setting="EXPOSURE_RETENTION_CODES",
            enforced_by=job,
            purge=store.purge_expired_codes(batch),
            oldest=store.oldest_code,
        ),
        RetentionPolicy(
            kind="verification-tokens",
            service=service,
            tables=("verification_tokens",),
            purpose="Keyed hash of a token's id, so each token buys one certificate only.",
            measured_from="expires_at",
            action=Action.DELETE,
            bounds=TOKENS,
            deadline=settings.tokens,
            setting="EXPOSURE_RETENTION_TOKENS",
            enforced_by=job,
            purge=store.purge_expired_tokens(batch),
            oldest=store.oldest_token,
        ),
        RetentionPolicy(
            kind="audit-entries",
            service=service,
            tables=("verification_audit_entries",),
            purpose="Who changed realms, API keys and signing keys, and who expired a code.",
            measured_from="created_at",
            action=Action.DELETE,
            bounds=AUDIT_ENTRIES,
            deadline=settings.audit_entries,
            setting="EXPOSURE_RETENTION_AUDIT_ENTRIES",
            enforced_by=job,
            purge=store.purge_audit_entries(batch),
            oldest=store.oldest_audit_entry,
        ),
        RetentionPolicy(
            kind="retired-signing-keys",
            service=service,
            tables=("verification_signing_keys",),
            purpose=(
                "Public halves (JWKS) and sealed-key references of the token and certificate "
                "signing keys; no personal data."
            ),
            measured_from="retired_at",
            action=Action.DESTROY,
            bounds=RETIRED_SIGNING_KEYS,
            deadline=settings.retired_signing_keys,
            setting="EXPOSURE_RETENTION_RETIRED_SIGNING_KEYS",
            enforced_by=f"{job} (the row and its sealed private key together)",
            purge=delete_signing_keys,
            oldest=store.oldest_retired_signing_key,
        ),
        RetentionPolicy(
            kind="disabled-api-keys",
            service=service,
            tables=("verification_api_keys",),
            purpose="Keyed hashes of lab, app and auditor API keys, to authenticate them.",
            measured_from="disabled_at",
            action=Action.DELETE,
            bounds=DISABLED_API_KEYS,
            deadline=settings.disabled_api_keys,
            setting="EXPOSURE_RETENTION_DISABLED_API_KEYS",
            enforced_by=f"{job} (once no code row names the key)",
            purge=delete_api_keys,
            oldest=store.oldest_disabled_api_key,
        ),
        RetentionPolicy(
            kind="staff-sessions",
            service=service,
            tables=("verification_staff_sessions",),
            purpose=(
                "Keyed hash of a console session's token, so a signed-in staff member stays "
                "signed in; deleted at once on sign-out or when the account is disabled."
            ),
            measured_from="expires_at",
            action=Action.DELETE,
            bounds=STAFF_SESSIONS,
            deadline=settings.staff_sessions,
            setting="EXPOSURE_RETENTION_STAFF_SESSIONS",
            enforced_by=job,
            purge=console_store.purge_expired_sessions(batch),
            oldest=console_store.oldest_session,
        ),
        RetentionPolicy(
            kind="disabled-staff-accounts",
            service=service,
            tables=("verification_staff",),
            purpose=(
                "Console staff accounts (username, role, argon2id password hash, sealed TOTP "
                "secret, time zone), so lab staff, realm admins and auditors can sign in."
            ),
            measured_from="disabled_at",
            action=Action.DELETE,
            bounds=DISABLED_STAFF,
            deadline=settings.disabled_staff,
            setting="EXPOSURE_RETENTION_DISABLED_STAFF",
            enforced_by=f"{job} (active accounts stay until an admin disables them)",
            purge=console_store.purge_disabled_staff(batch),
            oldest=console_store.oldest_disabled_staff,
        ),
        RetentionPolicy(
            kind="realms",
            service=service,
            tables=("verification_realms",),
            purpose="Each health authority's code policy and certificate identity. Configuration.",
            measured_from="-",
            action=Action.KEEP,
            bounds=None,
            deadline=None,
            setting=None,
            enforced_by="an operator (exposure admin realm)",
        ),
    ]
