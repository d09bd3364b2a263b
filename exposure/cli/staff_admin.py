"""``exposure admin staff ...``: the console's staff accounts (add, list, disable).

A password is read from standard input (``--password-stdin``, for scripts) or asked for at
a prompt, never taken as an argument: arguments show in ``ps`` and shell histories.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from exposure.cli.admin import ACTOR, JsonOption, verification
from exposure.cli.common import emit, emit_rows, utc_now
from exposure.cli.failures import fail
from verification.console import service
from verification.console.models import StaffAccount, StaffRole
from verification.service import realms

staff_app = typer.Typer(
    help="Staff accounts of the web console (lab, realm admin, auditor).", no_args_is_help=True
)


class LanguageChoice(StrEnum):
    vi = "vi"
    en = "en"


class RoleChoice(StrEnum):
    lab = "lab"
    realm_admin = "realm_admin"
    auditor = "auditor"


RealmArgument = Annotated[str, typer.Argument(help="Realm name or id.")]
UsernameArgument = Annotated[str, typer.Argument(help="The person's username in the realm.")]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        fail("no password given")
    return password


def _row(account: StaffAccount) -> dict[str, Any]:
    return {
        "id": account.id,
        "realm_id": account.realm_id,
        "username": account.username,
        "role": account.role,
        "totp": account.totp_sealed is not None,
        "time_zone": account.time_zone,
        "language": account.language,
        "created_at": account.created_at,
        "disabled_at": account.disabled_at,
    }


@staff_app.command("add")
def add_staff(
    realm: RealmArgument,
    username: UsernameArgument,
    role: Annotated[RoleChoice, typer.Option(help="What the account may do.")] = RoleChoice.lab,
    time_zone: Annotated[
        str, typer.Option(help="IANA zone the person's dates are in.")
    ] = "Asia/Ho_Chi_Minh",
    language: Annotated[
        LanguageChoice, typer.Option(help="The console's language for this person.")
    ] = LanguageChoice.vi,
    totp: Annotated[
        bool, typer.Option(help="Require an authenticator code; prints its secret once.")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a staff account; the password is asked for (or read from standard input)."""
    password = _read_password(password_stdin)
    with verification() as (deployment, session):
        found = realms.find_realm(session, realm)
        try:
            created = service.create_staff(
                session,
                deployment.verification.console,
                realm=found,
                username=username,
                role=StaffRole(role.value),
                password=password,
                time_zone=time_zone,
                with_totp=totp,
                now=utc_now(),
                actor=ACTOR,
                language=language.value,
            )
        except service.StaffError as error:
            fail(str(error))
        data = _row(created.account)
        data["realm"] = found.name
    if created.totp_secret is not None:
        data["totp_secret"] = created.totp_secret
        data["totp_uri"] = created.totp_uri
    emit(data, as_json)


@staff_app.command("list")
def list_staff(
    realm: Annotated[str | None, typer.Option(help="Only this realm (name or id).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every staff account (or a realm's): username, role, second factor, whether disabled."""
    with verification() as (_deployment, session):
        realm_id = realms.find_realm(session, realm).id if realm is not None else None
        rows = [_row(account) for account in service.list_staff(session, realm_id)]
    columns = ["id", "realm_id", "username", "role", "totp", "time_zone", "disabled_at"]
    emit_rows(rows, columns, as_json)


def _change_account(realm: str, username: str, change: service.AccountChange) -> str:
    """Run ``change`` on an account of ``realm``; names the account it changed."""
    with verification() as (_deployment, session):
        found = realms.find_realm(session, realm)
        try:
            account = change(session, realm=found, username=username, now=utc_now(), actor=ACTOR)
        except service.StaffError as error:
            fail(str(error))
        return f"staff account {account.id} ({account.username}) of realm {found.name}"


@staff_app.command("disable")
def disable_staff(realm: RealmArgument, username: UsernameArgument) -> None:
    """Disable an account and sign it out everywhere at once."""
    typer.echo(f"disabled {_change_account(realm, username, service.disable_staff)}")


@staff_app.command("remove-second-factor")
def remove_second_factor(realm: RealmArgument, username: UsernameArgument) -> None:
    """Remove an account's authenticator app (a lost phone) and sign it out everywhere; its
    owner adds a new one on the console's account page."""
    changed = _change_account(realm, username, service.remove_second_factor)
    typer.echo(f"{changed} signs in without an authenticator app until its owner adds one")
