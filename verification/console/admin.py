"""What a realm admin sees of their realm and may change in it.

Seen: its code policy and quota, its signing keys and where their rotation stands, its
API keys, its staff, and its daily counts of codes issued, claimed and expired. Changed,
each through the function ``exposure admin`` calls and with an audit entry: API keys
created and disabled, staff accounts created and disabled, and how long codes live and
how many a day the realm issues. Only in the admin's own realm: an id from another realm
is answered as if it did not exist.

Counts below :data:`SMALL_COUNT` are not shown, only that they are small: a day with one
or two codes could point at the people tested that day.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from exposure.text import has_control_character
from verification.console import i18n, store
from verification.console import service as console_service
from verification.console.models import StaffAccount, StaffRole
from verification.console.service import ConsoleContext, StaffView, require_role
from verification.errors import InvalidRealmPolicy
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


# ---- what a realm admin changes ----------------------------------------------------------

API_KEY_NAME_MAX_LENGTH = 100


class AdminRefused(Exception):  # noqa: N818 - reads as the refusal it is
    """A realm admin's change that was not made: ``message`` is a message id of
    :mod:`verification.console.i18n`, ``detail`` the service's own (English) reason."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def _actor(staff: StaffView) -> str:
    return f"staff:{staff.id}"


def _own_realm(session: Session, staff: StaffView) -> Realm:
    require_role(staff, *ADMIN_ROLES)
    return realms.find_realm(session, str(staff.realm_id))


def create_api_key(
    session: Session,
    context: ConsoleContext,
    *,
    staff: StaffView,
    kind: str,
    name: str,
    now: datetime,
) -> realms.NewApiKey:
    """A new API key of the admin's realm; its value is in the answer and nowhere else."""
    realm = _own_realm(session, staff)
    try:
        key_kind = realms.ApiKeyKind(kind)
    except ValueError:
        raise AdminRefused(i18n.ADMIN_BAD_KEY_KIND) from None
    name = name.strip()
    if not 0 < len(name) <= API_KEY_NAME_MAX_LENGTH or has_control_character(name):
        raise AdminRefused(i18n.ADMIN_BAD_KEY_NAME)
    return realms.create_api_key(
        session,
        context.verification,
        realm=realm,
        kind=key_kind,
        name=name,
        now=now,
        actor=_actor(staff),
    )


def _number(text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise AdminRefused(i18n.ADMIN_NOT_A_NUMBER)
    return int(text)


def disable_api_key(session: Session, *, staff: StaffView, key_id: str, now: datetime) -> ApiKey:
    """Disable an API key of the admin's own realm (a no-op when already disabled)."""
    realm = _own_realm(session, staff)
    wanted = _number(key_id)
    if not any(key.id == wanted for key in realms.list_api_keys(session, realm_id=realm.id)):
        raise AdminRefused(i18n.ADMIN_NO_SUCH_KEY)
    return realms.disable_api_key(session, api_key_id=wanted, now=now, actor=_actor(staff))


def create_staff(
    session: Session,
    context: ConsoleContext,
    *,
    staff: StaffView,
    username: str,
    role: str,
    password: str,
    now: datetime,
) -> StaffAccount:
    """A staff account in the admin's realm, in the admin's time zone and language (the
    person changes neither yet); its owner adds a second factor on their account page."""
    realm = _own_realm(session, staff)
    try:
        new_role = StaffRole(role)
    except ValueError:
        raise AdminRefused(i18n.ADMIN_BAD_ROLE) from None
    try:
        created = console_service.create_staff(
            session,
            context,
            realm=realm,
            username=username,
            role=new_role,
            password=password,
            time_zone=staff.time_zone,
            with_totp=False,
            now=now,
            actor=_actor(staff),
            language=staff.language,
        )
    except console_service.StaffError as refused:
        raise AdminRefused(i18n.ADMIN_STAFF_REFUSED, str(refused)) from None
    return created.account


def _change_another_account(
    session: Session,
    change: console_service.AccountChange,
    *,
    staff: StaffView,
    username: str,
    now: datetime,
    refusal_for_own: str,
) -> StaffAccount:
    realm = _own_realm(session, staff)
    if username == staff.username:
        raise AdminRefused(refusal_for_own)
    try:
        return change(session, realm=realm, username=username, now=now, actor=_actor(staff))
    except console_service.StaffError:
        raise AdminRefused(i18n.ADMIN_NO_SUCH_STAFF) from None


def disable_staff(
    session: Session, *, staff: StaffView, username: str, now: datetime
) -> StaffAccount:
    """Disable an account of the admin's realm and end its sessions; not the admin's own
    (a realm could lose its last admin)."""
    return _change_another_account(
        session,
        console_service.disable_staff,
        staff=staff,
        username=username,
        now=now,
        refusal_for_own=i18n.ADMIN_NOT_YOURSELF,
    )


def remove_second_factor(
    session: Session, *, staff: StaffView, username: str, now: datetime
) -> StaffAccount:
    """Remove the authenticator app of an account of the admin's realm (a lost phone) and
    end its sessions; not the admin's own, so that a stolen session cannot weaken the
    admin's sign-in: another admin, or an operator, does that."""
    return _change_another_account(
        session,
        console_service.remove_second_factor,
        staff=staff,
        username=username,
        now=now,
        refusal_for_own=i18n.ADMIN_NOT_YOUR_OWN_APP,
    )


def change_code_limits(
    session: Session,
    *,
    staff: StaffView,
    short_code_minutes: str,
    long_code_minutes: str,
    daily_issue_limit: str,
    now: datetime,
) -> bool:
    """Set the realm's code lifetimes and daily quota, within the bounds every realm has."""
    realm = _own_realm(session, staff)
    numbers = [_number(text) for text in (short_code_minutes, long_code_minutes, daily_issue_limit)]
    try:
        return realms.change_code_limits(
            session,
            realm,
            short_code_minutes=numbers[0],
            long_code_minutes=numbers[1],
            daily_issue_limit=numbers[2],
            now=now,
            actor=_actor(staff),
        )
    except InvalidRealmPolicy as refused:
        raise AdminRefused(i18n.ADMIN_LIMITS_REFUSED, refused.message) from None
