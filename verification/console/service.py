"""The console's use cases: staff accounts, sign-in, sessions, and the lab's work.

The lab's work goes through :mod:`verification.service.codes`, the functions the lab API
calls: one rule in one place. Nothing here runs SQL (:mod:`verification.console.store`
does) or knows HTTP (:mod:`verification.console.routes` does).

Sign-in, in the order it runs: a slot is taken from the (realm, username) lockout on a
connection of its own, so every concurrent attempt sees it (:func:`take_sign_in_slot`); the
realm, account, password and second factor are checked, an unknown realm or username
spending the same argon2 time as a known one (:func:`sign_in`); a success gives its slot
back. Every refusal is the same :class:`SignInFailed`, locked-out or not.
"""

from __future__ import annotations

import contextlib
import csv
import hmac
import uuid as uuid_module
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from crypto.codes import hmac_sha512
from crypto.encoding import b64url_decode, b64url_encode
from crypto.errors import InvalidSealedData
from crypto.randomness import random_bytes
from crypto.sealing import Keyring, open_sealed, seal
from exposure.ratelimit import BucketLimit, bucket_key, give_back, take
from exposure.text import has_control_character
from verification.console import credentials, store
from verification.console.i18n import DEFAULT_LANGUAGE, LANGUAGES
from verification.console.models import USERNAME_MAX_LENGTH, StaffAccount, StaffRole, StaffSession
from verification.context import VerificationContext
from verification.errors import (
    CodeNotFound,
    RealmNotFound,
    UnparsableRequest,
    VerificationError,
)
from verification.models import Realm
from verification.service import audit, codes, realms

SESSION_TOKEN_BYTES = 32
#: Characters of a cookie's signature (base64url of 24 bytes of HMAC).
SIGNATURE_BYTES = 24


class SignInFailed(Exception):  # noqa: N818 - reads as the refusal it is
    """Wrong realm, username, password or second factor, a disabled account, or locked
    out: one answer for all, so the page reveals nothing about which."""


class NotAllowed(Exception):  # noqa: N818
    """The signed-in account's role may not do this."""


class StaffError(ValueError):
    """An operator's bad input for a staff account (one clear line)."""


@dataclass(frozen=True)
class ConsoleContext:
    """Built once by the bundle: what the console needs besides a session."""

    verification: VerificationContext
    #: Signs cookies and derives session-token hashes and CSRF tokens.
    cookie_key: bytes
    #: Seals TOTP secrets (a key per hashing secret, newest current).
    totp_keyring: Keyring
    #: Whether cookies get ``Secure`` (the public URL is https).
    secure_cookies: bool
    session_lifetime: timedelta
    sign_in_failures: int
    sign_in_window: timedelta


@dataclass(frozen=True)
class StaffView:
    """A signed-in account, detached from the database session."""

    id: int
    realm_id: int
    realm_name: str
    username: str
    role: StaffRole
    time_zone: str
    language: str


@dataclass(frozen=True)
class NewStaff:
    account: StaffAccount
    #: Shown once, for the person's authenticator app; None without a second factor.
    totp_secret: str | None
    totp_uri: str | None


@dataclass(frozen=True)
class SignedIn:
    staff: StaffView
    #: The cookie's value: the session token and its signature.
    cookie: str


# ---- tokens, cookies and CSRF ----------------------------------------------------------


def _mac(context: ConsoleContext, label: bytes, token: str) -> bytes:
    return hmac_sha512(context.cookie_key, label + b"\x00" + token.encode())


def _sign(context: ConsoleContext, token: str) -> str:
    signature = b64url_encode(_mac(context, b"cookie", token)[:SIGNATURE_BYTES])
    return f"{token}.{signature}"


def unsign(context: ConsoleContext, cookie: str) -> str | None:
    """The token inside a signed cookie value, or None when the signature is wrong."""
    token, _, signature = cookie.partition(".")
    expected = b64url_encode(_mac(context, b"cookie", token)[:SIGNATURE_BYTES])
    if not token or not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    return token


def new_signed_token(context: ConsoleContext) -> str:
    """A fresh random token, signed: a session's, or a signed-out form's CSRF cookie."""
    return _sign(context, b64url_encode(random_bytes(SESSION_TOKEN_BYTES)))


def csrf_token(context: ConsoleContext, cookie: str) -> str:
    """The CSRF token forms must carry for the browser holding ``cookie`` (signed)."""
    token = unsign(context, cookie) or ""
    return b64url_encode(_mac(context, b"csrf", token)[:SIGNATURE_BYTES])


def csrf_matches(context: ConsoleContext, cookie: str, submitted: str) -> bool:
    if unsign(context, cookie) is None:
        return False
    return hmac.compare_digest(csrf_token(context, cookie).encode(), submitted.encode())


# ---- staff accounts ---------------------------------------------------------------------


def _check_username(username: str) -> None:
    if not 1 <= len(username) <= USERNAME_MAX_LENGTH or has_control_character(username):
        raise StaffError(f"a username has 1 to {USERNAME_MAX_LENGTH} printable characters")
    if username != username.strip():
        raise StaffError("a username may not start or end with a space")


def _check_time_zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise StaffError("the time zone must be an IANA name such as Asia/Ho_Chi_Minh") from None


def _totp_aad(realm_id: int, username: str) -> bytes:
    return f"exposure/verification/console-totp/{realm_id}/{username}".encode()


def _keep_totp_secret(context: ConsoleContext, account: StaffAccount, secret: str) -> None:
    """Store ``secret`` on ``account``, sealed and bound to its realm and username."""
    box = seal(context.totp_keyring, secret.encode(), _totp_aad(account.realm_id, account.username))
    account.totp_key_id, account.totp_sealed = box.key_id, box.data


def _record_account_change(
    session: Session, account: StaffAccount, action: str, now: datetime, actor: str = ""
) -> None:
    """An audit entry of a change to ``account``, by ``actor`` (default: its own staff)."""
    audit.record(
        session,
        realm_id=account.realm_id,
        actor=actor or f"staff:{account.id}",
        action=action,
        target=f"staff:{account.id}",
        now=now,
    )


def create_staff(
    session: Session,
    context: ConsoleContext,
    *,
    realm: Realm,
    username: str,
    role: StaffRole,
    password: str,
    time_zone: str,
    with_totp: bool,
    now: datetime,
    actor: str,
    language: str = DEFAULT_LANGUAGE,
) -> NewStaff:
    """Add a staff account to ``realm``; raise :class:`StaffError` on bad input."""
    _check_username(username)
    _check_time_zone(time_zone)
    if language not in LANGUAGES:
        raise StaffError(f"the language must be one of {', '.join(LANGUAGES)}")
    if store.staff_by_username(session, realm.id, username) is not None:
        raise StaffError("this realm already has a staff account with that username")
    try:
        password_hash = credentials.hash_password(password)
    except credentials.WeakPassword as weak:
        raise StaffError(str(weak)) from None
    account = StaffAccount(
        realm_id=realm.id,
        username=username,
        role=role.value,
        password_hash=password_hash,
        time_zone=time_zone,
        language=language,
        created_at=now,
    )
    secret = uri = None
    if with_totp:
        secret = credentials.new_totp_secret()
        _keep_totp_secret(context, account, secret)
        uri = credentials.totp_uri(secret, username=username, issuer=realm.name)
    store.add_staff(session, account)
    audit.record(
        session,
        realm_id=realm.id,
        actor=actor,
        action="created staff account",
        target=f"staff:{account.id}",
        diff=f"role={role.value} totp={'yes' if with_totp else 'no'}",
        now=now,
    )
    return NewStaff(account=account, totp_secret=secret, totp_uri=uri)


def list_staff(session: Session, realm_id: int | None = None) -> list[StaffAccount]:
    return store.list_staff(session, realm_id)


def _account_of(session: Session, realm: Realm, username: str) -> StaffAccount:
    account = store.staff_by_username(session, realm.id, username)
    if account is None:
        raise StaffError("no staff account with that username in this realm")
    return account


class AccountChange(Protocol):
    """A change an admin or an operator makes to a staff account of a realm, by username
    (:func:`disable_staff`, :func:`remove_second_factor`)."""

    def __call__(
        self, session: Session, *, realm: Realm, username: str, now: datetime, actor: str
    ) -> StaffAccount: ...


def _changed_and_signed_out(
    session: Session, account: StaffAccount, *, action: str, actor: str, now: datetime
) -> None:
    """End every session of a changed account, and audit the change."""
    store.delete_sessions_of(session, account.id)
    _record_account_change(session, account, action, now, actor=actor)


def disable_staff(
    session: Session, *, realm: Realm, username: str, now: datetime, actor: str
) -> StaffAccount:
    """Disable an account and end its sessions at once; a no-op when already disabled."""
    account = _account_of(session, realm, username)
    if account.disabled_at is None:
        account.disabled_at = now
        _changed_and_signed_out(
            session, account, action="disabled staff account", actor=actor, now=now
        )
    return account


def remove_second_factor(
    session: Session, *, realm: Realm, username: str, now: datetime, actor: str
) -> StaffAccount:
    """Take an account's authenticator app away (its phone was lost) and end its sessions:
    it signs in with its password alone until its owner adds a new app. A no-op when it has
    none; raise :class:`StaffError` when there is no such account."""
    account = _account_of(session, realm, username)
    if account.totp_sealed is not None:
        account.totp_key_id, account.totp_sealed = None, None
        _changed_and_signed_out(
            session, account, action="removed staff second factor", actor=actor, now=now
        )
    return account


# ---- a second factor the staff member adds themselves ----------------------------------


class SecondFactorRefused(Exception):  # noqa: N818 - reads as the refusal it is
    """Why an authenticator app was not added, by a stable code (``code``)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


#: The account already has one; a realm admin or an operator removes it first.
SECOND_FACTOR_EXISTS = "second_factor_exists"
#: The code typed is not the app's current one for the secret shown.
SECOND_FACTOR_CODE_WRONG = "second_factor_code_wrong"
#: The page's sealed secret was changed, or belongs to another account.
SECOND_FACTOR_FORM_INVALID = "second_factor_form_invalid"


@dataclass(frozen=True)
class PendingSecondFactor:
    """A secret shown to its account's owner, not yet stored: the page carries it sealed
    (``sealed``), so nothing is kept until the app proves it has it."""

    secret: str
    uri: str
    sealed: str


def _pending_aad(staff: StaffView) -> bytes:
    # Not the stored secret's AAD: a page's sealed secret cannot pass for an account's.
    return f"exposure/verification/console-totp-pending/{staff.id}/{staff.username}".encode()


def _pending(context: ConsoleContext, staff: StaffView, secret: str) -> PendingSecondFactor:
    box = seal(context.totp_keyring, secret.encode(), _pending_aad(staff))
    return PendingSecondFactor(
        secret=secret,
        uri=credentials.totp_uri(secret, username=staff.username, issuer=staff.realm_name),
        sealed=f"{box.key_id}.{b64url_encode(box.data)}",
    )


def new_second_factor(context: ConsoleContext, staff: StaffView) -> PendingSecondFactor:
    """A fresh authenticator secret for ``staff`` to add to their app."""
    return _pending(context, staff, credentials.new_totp_secret())


def pending_second_factor(
    context: ConsoleContext, staff: StaffView, sealed: str
) -> PendingSecondFactor:
    """The secret a page carried sealed, to show again; raise :class:`SecondFactorRefused`
    when it was changed or sealed for another account."""
    key_id, _, data = sealed.rpartition(".")
    try:
        secret = open_sealed(
            context.totp_keyring, key_id, b64url_decode(data), _pending_aad(staff)
        ).decode("ascii")
    except (InvalidSealedData, ValueError):
        raise SecondFactorRefused(SECOND_FACTOR_FORM_INVALID) from None
    return _pending(context, staff, secret)


def has_second_factor(session: Session, staff: StaffView) -> bool:
    account = store.staff_by_id(session, staff.id)
    return account is not None and account.totp_sealed is not None


def add_second_factor(
    session: Session,
    context: ConsoleContext,
    *,
    staff: StaffView,
    sealed: str,
    code: str,
    now: datetime,
) -> None:
    """Store the page's secret on ``staff``'s account once ``code`` shows the app has it;
    from the next sign-in on, the account needs the app's code.

    Raises :class:`SecondFactorRefused` (nothing stored) when the account has one already,
    the page's secret is not intact or the code is not the secret's current one.
    """
    account = store.staff_by_id_for_update(session, staff.id)
    if account is None:
        raise SecondFactorRefused(SECOND_FACTOR_FORM_INVALID)
    if account.totp_sealed is not None:
        raise SecondFactorRefused(SECOND_FACTOR_EXISTS)
    pending = pending_second_factor(context, staff, sealed)
    if not credentials.totp_matches(pending.secret, code.strip(), at=now.timestamp()):
        raise SecondFactorRefused(SECOND_FACTOR_CODE_WRONG)
    _keep_totp_secret(context, account, pending.secret)
    _record_account_change(session, account, "staff added a second factor", now)


# ---- sign-in and sessions ---------------------------------------------------------------


def sign_in_limit(context: ConsoleContext, realm_name: str, username: str) -> BucketLimit:
    """The lockout bucket of one (realm, username), named under a secret."""
    return BucketLimit(
        bucket_key(context.verification.bucket_secret, "console-sign-in", realm_name, username),
        context.sign_in_failures,
        context.sign_in_window,
    )


def take_sign_in_slot(connection: Connection, limit: BucketLimit, now: datetime) -> None:
    """Take one attempt from the lockout (on an autocommit connection), or raise
    :class:`SignInFailed` when the account's failures are spent."""
    decision = take(
        connection, bucket=limit.bucket, limit=limit.limit, window=limit.window, now=now
    )
    if not decision.allowed:
        raise SignInFailed


def give_back_sign_in_slot(connection: Connection, limit: BucketLimit, now: datetime) -> None:
    """A successful sign-in does not count as a failure."""
    give_back(connection, bucket=limit.bucket, window=limit.window, now=now)


def _second_factor_matches(
    context: ConsoleContext, account: StaffAccount, code: str, now: datetime
) -> bool:
    if account.totp_sealed is None or account.totp_key_id is None:
        return True
    try:
        secret = open_sealed(
            context.totp_keyring,
            account.totp_key_id,
            account.totp_sealed,
            _totp_aad(account.realm_id, account.username),
        ).decode()
    except InvalidSealedData:
        return False
    return credentials.totp_matches(secret, code.strip(), at=now.timestamp())


def _view(account: StaffAccount, realm_name: str) -> StaffView:
    return StaffView(
        id=account.id,
        realm_id=account.realm_id,
        realm_name=realm_name,
        username=account.username,
        role=StaffRole(account.role),
        time_zone=account.time_zone,
        language=account.language,
    )


def sign_in(
    session: Session,
    context: ConsoleContext,
    *,
    realm_name: str,
    username: str,
    password: str,
    totp_code: str,
    now: datetime,
) -> SignedIn:
    """Check the credentials and open a session; raise :class:`SignInFailed` otherwise.

    Whether the realm or account exists, the password is checked against a hash (a dummy
    one when there is no account), so every refusal takes the same argon2 time.
    """
    account: StaffAccount | None = None
    realm: Realm | None = None
    with contextlib.suppress(RealmNotFound):
        realm = realms.find_realm(session, realm_name)
    # A username no account can have is not looked up (PostgreSQL refuses NUL in text),
    # but still costs the dummy hash below.
    plausible = len(username) <= USERNAME_MAX_LENGTH and not has_control_character(username)
    if realm is not None and realm.disabled_at is None and plausible:
        account = store.staff_by_username(session, realm.id, username)
    if account is not None and account.disabled_at is not None:
        account = None
    password_ok = credentials.password_matches(account.password_hash if account else None, password)
    if account is None or realm is None or not password_ok:
        raise SignInFailed
    if not _second_factor_matches(context, account, totp_code, now):
        raise SignInFailed
    cookie = new_signed_token(context)
    token = unsign(context, cookie) or ""
    store.add_session(
        session,
        StaffSession(
            staff_id=account.id,
            token_hmac=_mac(context, b"session", token),
            created_at=now,
            expires_at=now + context.session_lifetime,
        ),
    )
    _record_account_change(session, account, "staff signed in", now)
    return SignedIn(staff=_view(account, realm.name), cookie=cookie)


def current_staff(
    session: Session, context: ConsoleContext, cookie: str, now: datetime
) -> StaffView | None:
    """The account a session cookie belongs to, or None (unsigned, unknown, expired,
    signed out, or the account or its realm disabled)."""
    token = unsign(context, cookie)
    if token is None:
        return None
    found = store.live_session(session, _mac(context, b"session", token), now)
    if found is None:
        return None
    account = found[1]
    realm = realms.find_realm(session, str(account.realm_id))
    if realm.disabled_at is not None:
        return None
    return _view(account, realm.name)


def sign_out(session: Session, context: ConsoleContext, cookie: str) -> None:
    token = unsign(context, cookie)
    if token is not None:
        store.delete_session(session, _mac(context, b"session", token))


def require_role(staff: StaffView, *allowed: StaffRole) -> None:
    if staff.role not in allowed:
        raise NotAllowed


# ---- the lab's work ---------------------------------------------------------------------

LAB_ROLES = (StaffRole.LAB, StaffRole.REALM_ADMIN)


def utc_offset_minutes(time_zone: str, now: datetime) -> float:
    """The zone's offset from UTC at ``now``, in minutes (what ``tzOffset`` carries)."""
    offset = now.astimezone(zoneinfo.ZoneInfo(time_zone)).utcoffset()
    return (offset or timedelta(0)).total_seconds() / 60


def local_today(staff: StaffView, now: datetime) -> date:
    return now.astimezone(zoneinfo.ZoneInfo(staff.time_zone)).date()


@dataclass(frozen=True)
class CodeOrder:
    """What a lab asks a code for: a test type and a date, as typed (YYYY-MM-DD or '')."""

    test_type: str
    symptom_date: str = ""
    test_date: str = ""


def issue_code(
    session: Session,
    context: ConsoleContext,
    *,
    staff: StaffView,
    order: CodeOrder,
    now: datetime,
) -> codes.IssuedCode:
    """Issue one code as ``/api/issue`` does, dated in the staff member's time zone."""
    require_role(staff, *LAB_ROLES)
    realm = realms.find_realm(session, str(staff.realm_id))
    request = codes.IssueRequest(
        test_type=order.test_type,
        symptom_date=order.symptom_date,
        test_date=order.test_date,
        tz_offset_minutes=utc_offset_minutes(staff.time_zone, now),
        uuid="",
        external_issuer_id=f"staff:{staff.id}",
    )
    issued = codes.issue_code(
        session,
        context.verification,
        realm=realm,
        api_key=None,
        request=request,
        now=now,
    )
    audit.record(
        session,
        realm_id=realm.id,
        actor=f"staff:{staff.id}",
        action="issued verification code",
        target=f"code_uuid:{issued.uuid}",
        now=now,
    )
    return issued


@dataclass(frozen=True)
class RowError:
    """One refused row of a bulk upload: its line number and why (a stable code)."""

    line: int
    code: str
    message: str


class BulkRejected(Exception):  # noqa: N818
    """A bulk upload with at least one bad row: nothing of it may stay issued."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} rows refused")
        self.errors = tuple(errors)


MAX_BULK_ROWS = 500


def parse_bulk_rows(text: str) -> list[tuple[int, CodeOrder | RowError]]:
    """The rows of a CSV upload (``test_type,symptom_date,test_date``, a header line
    optional), each with its line number: an order or the reason it cannot be one."""
    rows: list[tuple[int, CodeOrder | RowError]] = []
    for number, fields in enumerate(csv.reader(text.splitlines()), start=1):
        if not fields or all(not field.strip() for field in fields):
            continue
        cleaned = [field.strip() for field in fields]
        if number == 1 and cleaned[0].lower() in {"test_type", "testtype"}:
            continue
        if len(cleaned) > 3:
            error = RowError(number, "unparsable_request", "a row has at most 3 columns")
            rows.append((number, error))
            continue
        cleaned += [""] * (3 - len(cleaned))
        rows.append((number, CodeOrder(cleaned[0], cleaned[1], cleaned[2])))
    if len(rows) > MAX_BULK_ROWS:
        line = rows[MAX_BULK_ROWS][0]
        return [(line, RowError(line, "unparsable_request", f"at most {MAX_BULK_ROWS} rows"))]
    return rows


def issue_bulk(
    session: Session,
    context: ConsoleContext,
    *,
    staff: StaffView,
    text: str,
    now: datetime,
) -> list[codes.IssuedCode]:
    """Issue a code per row, or none: every row is tried (each in a savepoint, so each
    error is found) and any refusal raises :class:`BulkRejected`, whose caller rolls the
    whole upload back."""
    require_role(staff, *LAB_ROLES)
    issued: list[codes.IssuedCode] = []
    errors: list[RowError] = []
    rows = parse_bulk_rows(text)
    if not rows:
        raise BulkRejected([RowError(0, "unparsable_request", "the file holds no rows")])
    for line, row in rows:
        if isinstance(row, RowError):
            errors.append(row)
            continue
        try:
            with session.begin_nested():
                issued.append(issue_code(session, context, staff=staff, order=row, now=now))
        except VerificationError as error:
            errors.append(RowError(line, error.code, error.message))
    if errors:
        raise BulkRejected(errors)
    return issued


def _code_uuid(text: str) -> str:
    try:
        return str(uuid_module.UUID(text.strip()))
    except ValueError:
        raise UnparsableRequest("uuid must be a UUID") from None


def code_status(session: Session, *, staff: StaffView, uuid: str) -> codes.CodeStatus:
    """A code of the staff member's own realm, as ``/api/checkcodestatus`` answers."""
    require_role(staff, *LAB_ROLES)
    realm = realms.find_realm(session, str(staff.realm_id))
    return codes.code_status(session, realm=realm, uuid=_code_uuid(uuid))


def expire_code(
    session: Session, *, staff: StaffView, uuid: str, now: datetime
) -> codes.CodeStatus:
    """Expire a code of the staff member's own realm, as ``/api/expirecode`` does."""
    require_role(staff, *LAB_ROLES)
    realm = realms.find_realm(session, str(staff.realm_id))
    return codes.expire_code(
        session, realm=realm, uuid=_code_uuid(uuid), now=now, actor=f"staff:{staff.id}"
    )


__all__ = [
    "BulkRejected",
    "CodeNotFound",
    "ConsoleContext",
    "NotAllowed",
    "SignInFailed",
    "StaffError",
    "StaffView",
]
