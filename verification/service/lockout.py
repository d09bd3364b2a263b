"""The lockout after wrong codes: a cap on how many code lookups may fail, per client
(an hour) and per realm (a window), so codes cannot be guessed by brute force.

The cap is on lookups, not on answers. A lookup takes a slot from each limit *before* it
is made, with one statement per limit that counts the attempt only if it still fits
(:func:`exposure.ratelimit.take`). However many requests race, at most the limit of them
get to look a code up, and each of those answers with what it found; the others are
refused ``quota_exceeded`` without looking. A lookup that finds its code, or a request
that fails before looking (a bad ``accept``), gives its slots back: only wrong and expired
codes keep theirs, as they always counted.

The client's slot is taken first, so a locked-out client cannot spend its realm's
allowance: a request it makes touches the realm's count not at all.

Example::

    attempt = lockout.begin_attempt(connection, context, client_bucket=..., realm_id=1, now=now)
    try:
        verify(...)
    except Exception as failure:
        attempt.settle(connection, failure)
        raise
    attempt.settle(connection, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from exposure.ratelimit import (
    BucketLimit,
    RateDecision,
    bucket_key,
    give_back,
    hit_decision,
    take,
    take_decision,
)
from verification import store
from verification.context import VerificationContext
from verification.errors import CodeExpired, CodeInvalid, QuotaExceeded

CLIENT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Attempt:
    """The slots one lookup took, and the moment they were taken at."""

    taken: tuple[BucketLimit, ...]
    now: datetime

    def settle(self, connection: Connection, failure: Exception | None) -> bool:
        """Keep the slots if ``failure`` is a wrong or expired code, else give them back;
        return whether they were kept (the lookup counted as a failed guess)."""
        if counts_as_failed_guess(failure):
            return True
        _give_back_all(connection, self.taken, self.now)
        return False


def counts_as_failed_guess(failure: Exception | None) -> bool:
    """Whether a lookup that ended in ``failure`` (None: success) spends its slots."""
    return isinstance(failure, CodeInvalid | CodeExpired)


def lockout_limits(
    context: VerificationContext, *, client_bucket: str, realm_id: int
) -> tuple[BucketLimit, BucketLimit]:
    """The client's limit and then the realm's."""
    settings = context.settings
    secret = context.bucket_secret
    return (
        BucketLimit(
            bucket_key(secret, "invalid-code-client", client_bucket),
            settings.invalid_codes_per_client_per_hour,
            CLIENT_WINDOW,
        ),
        BucketLimit(
            bucket_key(secret, "invalid-code-realm", str(realm_id)),
            settings.invalid_codes_per_realm_per_window,
            settings.invalid_code_window,
        ),
    )


def begin_attempt(
    connection: Connection,
    context: VerificationContext,
    *,
    client_bucket: str,
    realm_id: int,
    now: datetime,
) -> Attempt:
    """Take a slot from the client's limit, then from the realm's, or raise
    :class:`QuotaExceeded` (having taken none) when either is spent.

    ``connection`` should be in autocommit mode: each slot must count at once, for every
    concurrent request to see it, whatever happens to the lookup.
    """
    taken: list[BucketLimit] = []
    for limit in lockout_limits(context, client_bucket=client_bucket, realm_id=realm_id):
        decision = take(
            connection, bucket=limit.bucket, limit=limit.limit, window=limit.window, now=now
        )
        if not decision.allowed:
            _give_back_all(connection, taken, now)
            raise _refusal(decision)
        taken.append(limit)
    return Attempt(tuple(taken), now)


def _refusal(decision: RateDecision) -> QuotaExceeded:
    return QuotaExceeded(
        "too many invalid codes; try again later",
        headers={"Retry-After": str(decision.retry_after_seconds)},
    )


@dataclass(frozen=True)
class CountedAttempt:
    """What :func:`begin_counted_attempt` did: the request's decision; when it was allowed,
    the lookup's slots (``attempt``) or, having taken none, why not (``refusal``)."""

    request: RateDecision
    attempt: Attempt | None
    refusal: QuotaExceeded | None


def begin_counted_attempt(
    connection: Connection,
    context: VerificationContext,
    *,
    request_limit: BucketLimit,
    client_bucket: str,
    realm_id: int,
    now: datetime,
) -> CountedAttempt:
    """PostgreSQL, autocommitted: count the request against ``request_limit`` and, when it
    is allowed, :func:`begin_attempt`, in one statement: the same counts and the same
    refusal. A request refused by its own limit takes no slot."""
    client, realm = lockout_limits(context, client_bucket=client_bucket, realm_id=realm_id)
    admission = store.admit_lookup(
        connection, request=request_limit, client=client, realm=realm, now=now
    )
    decision = hit_decision(
        admission.request_count, limit=request_limit.limit, window=request_limit.window, now=now
    )
    if not decision.allowed:
        return CountedAttempt(decision, None, None)
    for limit, count in ((client, admission.client_count), (realm, admission.realm_count)):
        if count is None:
            if limit is realm:  # the client's slot was taken for nothing
                _give_back_all(connection, [client], now)
            refused = take_decision(None, limit=limit.limit, window=limit.window, now=now)
            return CountedAttempt(decision, None, _refusal(refused))
    return CountedAttempt(decision, Attempt((client, realm), now), None)


def _give_back_all(
    connection: Connection, limits: tuple[BucketLimit, ...] | list[BucketLimit], now: datetime
) -> None:
    for limit in limits:
        give_back(connection, bucket=limit.bucket, window=limit.window, now=now)
