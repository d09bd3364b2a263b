"""What a realm admin sees of their realm, read-only: its code policy and quota, its
signing keys and where their rotation stands, its API keys, its staff, and its daily
counts of codes issued, claimed and expired.

Counts below :data:`SMALL_COUNT` are not shown, only that they are small: a day with one
or two codes could point at the people tested that day.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from verification.console import store
from verification.console.models import StaffAccount, StaffRole
from verification.console.service import StaffView, require_role
from verification.models import ApiKey, Realm, SigningKey
from verification.service import realms, signing_keys

ADMIN_ROLES = (StaffRole.REALM_ADMIN,)
#: A count under this is shown as "fewer than" it.
SMALL_COUNT = 5
COUNT_DAYS = 14


@dataclass(frozen=True)
class DailyCount:
    day: date
    #: None when the number is below :data:`SMALL_COUNT` (shown as "fewer than 5").
    issued: int | None
    claimed: int | None
    expired: int | None


@dataclass(frozen=True)
class KeyStatus:
    kid: str
    state: str
    active_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True)
class RealmOverview:
    realm: Realm
    keys: list[KeyStatus]
    api_keys: list[ApiKey]
    staff: list[StaffAccount]
    counts: list[DailyCount]


def _shown(count: int) -> int | None:
    return count if count >= SMALL_COUNT else None


def _key_state(key: SigningKey, now: datetime) -> str:
    if key.retired_at is not None and key.retired_at <= now:
        return "retired"
    if key.active_at > now:
        return "published, not yet signing"
    if key.retired_at is not None:
        return "signing until replaced"
    return "signing"


def daily_counts(
    session: Session, realm_id: int, *, time_zone: str, now: datetime
) -> list[DailyCount]:
    """The last :data:`COUNT_DAYS` days (in ``time_zone``), newest first, small ones hidden."""
    zone = zoneinfo.ZoneInfo(time_zone)
    since = now - timedelta(days=COUNT_DAYS + 1)
    totals: dict[date, list[int]] = {}
    for hour, issued, claimed, expired in store.hourly_code_counts(
        session, realm_id, since=since, now=now
    ):
        day = hour.astimezone(zone).date()
        sums = totals.setdefault(day, [0, 0, 0])
        sums[0] += issued
        sums[1] += claimed
        sums[2] += expired
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=offset) for offset in range(COUNT_DAYS)]
    return [
        DailyCount(day, *(_shown(value) for value in totals.get(day, [0, 0, 0]))) for day in days
    ]


def overview(session: Session, staff: StaffView, now: datetime) -> RealmOverview:
    """The staff member's own realm, as its admin sees it."""
    require_role(staff, *ADMIN_ROLES)
    realm = realms.find_realm(session, str(staff.realm_id))
    keys = [
        KeyStatus(key.kid, _key_state(key, now), key.active_at, key.retired_at)
        for key in signing_keys.list_signing_keys(session, realm_id=realm.id)
    ]
    return RealmOverview(
        realm=realm,
        keys=keys,
        api_keys=realms.list_api_keys(session, realm_id=realm.id),
        staff=store.list_staff(session, realm.id),
        counts=daily_counts(session, realm.id, time_zone=staff.time_zone, now=now),
    )
