"""The console over TestClient, on both engines: sign-in, sessions, CSRF, lockout, and the
lab's pages issuing, checking and expiring codes through the lab API's own functions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select

from exposure.db import unit_of_work
from exposure.retention.log import verify_document
from tests.functional.verification.conftest import Api, make_api
from verification.console import service
from verification.console.models import StaffAccount, StaffRole, StaffSession
from verification.models import AuditEntry, VerificationCode
from verification.service import realms

PASSWORD = "correct horse battery"


@dataclass
class Console:
    api: Api
    totp_secret: str

    def add_staff(
        self,
        username: str,
        role: StaffRole = StaffRole.LAB,
        *,
        realm: str = "lab",
        with_totp: bool = False,
    ) -> service.NewStaff:
        deployment_console = self.api.client.app.state.deployment.verification.console  # type: ignore[attr-defined]
        with unit_of_work(self.api.sessions) as session:
            created = service.create_staff(
                session,
                deployment_console,
                realm=realms.find_realm(session, realm),
                username=username,
                role=role,
                password=PASSWORD,
                time_zone="Asia/Ho_Chi_Minh",
                with_totp=with_totp,
                now=self.api.clock(),
                actor="test",
            )
            session.expunge(created.account)
        return created

    def form_token(self, path: str) -> str:
        page = self.api.client.get(path)
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None
        return found.group(1)

    def sign_in(
        self, username: str, password: str = PASSWORD, *, realm: str = "lab", totp: str = ""
    ) -> int:
        csrf = self.form_token("/console/sign-in")
        response = self.api.client.post(
            "/console/sign-in",
            data={
                "csrf": csrf,
                "realm": realm,
                "username": username,
                "password": password,
                "totp": totp,
            },
            follow_redirects=False,
        )
        return response.status_code

    def issue(self, **fields: str) -> str:
        csrf = self.form_token("/console/lab")
        data = {"csrf": csrf, "test_type": "confirmed", "date_kind": "symptom"}
        data["date"] = self.api.clock().date().isoformat()
        data.update(fields)
        response = self.api.client.post("/console/lab/issue", data=data)
        return response.text


@pytest.fixture
def console(database_url: str, tmp_path: Path) -> Iterator[Console]:
    for api in make_api(database_url, tmp_path):
        yield Console(api, "")


def _code_of(page: str) -> tuple[str, str]:
    code = re.search(r'id="code">(\d+)<', page)
    uuid = re.search(r'id="code-uuid">([0-9a-f-]+)<', page)
    assert code is not None, page
    assert uuid is not None, page
    return code.group(1), uuid.group(1)


def test_a_lab_user_issues_a_code_that_a_phone_redeems(console: Console) -> None:
    console.add_staff("nurse")
    assert console.sign_in("nurse") == 303

    page = console.issue()
    code, uuid = _code_of(page)
    verified = console.api.device("/api/verify", {"code": code})
    status = console.api.client.get("/console/lab/status", params={"uuid": uuid})

    assert verified["status"] == 200
    assert verified["testtype"] == "confirmed"
    assert 'data-status="claimed"' in status.text
    with console.api.session() as session:
        stored = session.scalars(select(VerificationCode)).one()
        actions = [entry.action for entry in session.scalars(select(AuditEntry))]
    assert stored.issued_by_api_key_id is None
    assert "staff signed in" in actions
    assert "issued verification code" in actions


def test_the_issued_page_is_not_cached_and_the_cookie_is_strict(console: Console) -> None:
    console.add_staff("nurse")
    csrf = console.form_token("/console/sign-in")
    response = console.api.client.post(
        "/console/sign-in",
        data={"csrf": csrf, "realm": "lab", "username": "nurse", "password": PASSWORD},
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"].lower()
    page = console.api.client.post(
        "/console/lab/issue",
        data={
            "csrf": console.form_token("/console/lab"),
            "test_type": "confirmed",
            "date_kind": "test",
            "date": console.api.clock().date().isoformat(),
        },
    )

    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "secure" not in cookie  # served over plain http in this test
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_code_can_be_expired_from_the_console(console: Console) -> None:
    console.add_staff("nurse")
    console.sign_in("nurse")
    code, uuid = _code_of(console.issue())

    expired = console.api.client.post(
        "/console/lab/expire", data={"csrf": console.form_token("/console/lab"), "uuid": uuid}
    )
    verified = console.api.device("/api/verify", {"code": code})

    assert 'data-status="expired"' in expired.text
    assert verified["errorCode"] == "code_expired"


def test_wrong_passwords_unknown_users_and_realms_get_one_answer(console: Console) -> None:
    console.add_staff("nurse")

    answers = {
        console.sign_in("nurse", "wrong password!!"),
        console.sign_in("nobody"),
        console.sign_in("nurse", realm="no-such-realm"),
        console.sign_in("nur\x00se"),
        console.sign_in("x" * 500),
    }

    assert answers == {401}
    assert console.api.client.get("/console/lab", follow_redirects=False).status_code == 303


def test_sign_in_locks_out_after_repeated_failures(console: Console) -> None:
    console.add_staff("nurse")
    failures = [console.sign_in("nurse", "wrong password!!") for _ in range(5)]

    locked = console.sign_in("nurse")
    console.api.clock.advance(timedelta(minutes=16))
    later = console.sign_in("nurse")

    assert failures == [401] * 5
    assert locked == 401  # the right password, refused while locked out
    assert later == 303


def test_a_form_without_the_csrf_token_or_from_another_site_is_refused(console: Console) -> None:
    console.add_staff("nurse")
    console.sign_in("nurse")
    today = console.api.clock().date().isoformat()
    fields = {"test_type": "confirmed", "date_kind": "symptom", "date": today}

    no_token = console.api.client.post("/console/lab/issue", data=fields)
    wrong_token = console.api.client.post("/console/lab/issue", data={**fields, "csrf": "x"})
    cross_site = console.api.client.post(
        "/console/lab/issue",
        data={**fields, "csrf": console.form_token("/console/lab")},
        headers={"Origin": "https://evil.example"},
    )

    assert [no_token.status_code, wrong_token.status_code, cross_site.status_code] == [403] * 3
    with console.api.session() as session:
        assert session.scalars(select(VerificationCode)).all() == []


def test_totp_is_required_when_the_account_has_one(console: Console) -> None:
    created = console.add_staff("nurse", with_totp=True)
    assert created.totp_secret is not None
    now = console.api.clock().timestamp()
    right = pyotp.TOTP(created.totp_secret).at(now)

    assert console.sign_in("nurse") == 401
    assert console.sign_in("nurse", totp="000000" if right != "000000" else "111111") == 401
    assert console.sign_in("nurse", totp=right) == 303


def test_signing_out_or_disabling_ends_the_session(console: Console) -> None:
    console.add_staff("nurse")
    console.sign_in("nurse")
    signed_out = console.api.client.post(
        "/console/sign-out",
        data={"csrf": console.form_token("/console/lab")},
        follow_redirects=False,
    )
    assert signed_out.status_code == 303
    assert console.api.client.get("/console/lab", follow_redirects=False).status_code == 303

    console.sign_in("nurse")
    with unit_of_work(console.api.sessions) as session:
        service.disable_staff(
            session,
            realm=realms.find_realm(session, "lab"),
            username="nurse",
            now=console.api.clock(),
            actor="test",
        )
    assert console.api.client.get("/console/lab", follow_redirects=False).status_code == 303
    with console.api.session() as session:
        assert session.scalars(select(StaffSession)).all() == []
        assert session.scalars(select(StaffAccount)).one().disabled_at is not None


def test_a_lab_user_cannot_see_another_realm_s_codes(console: Console) -> None:
    with unit_of_work(console.api.sessions) as session:
        realms.create_realm(
            session,
            console.api.client.app.state.deployment.verification.context,  # type: ignore[attr-defined]
            name="other",
            now=console.api.clock(),
            actor="test",
        )
    console.add_staff("nurse")
    console.add_staff("stranger", realm="other")
    console.sign_in("nurse")
    _code, uuid = _code_of(console.issue())
    console.api.client.cookies.clear()

    console.sign_in("stranger", realm="other")
    status = console.api.client.get("/console/lab/status", params={"uuid": uuid})
    expire = console.api.client.post(
        "/console/lab/expire", data={"csrf": console.form_token("/console/lab"), "uuid": uuid}
    )

    assert status.status_code == 404
    assert uuid not in status.text
    assert 'id="code-status"' not in status.text
    assert expire.status_code == 404


def test_an_auditor_cannot_issue_codes(console: Console) -> None:
    console.add_staff("checker", StaffRole.AUDITOR)
    console.sign_in("checker")

    assert console.api.client.get("/console/lab").status_code == 403


def test_a_bulk_upload_with_a_bad_row_issues_nothing(console: Console) -> None:
    console.add_staff("nurse")
    console.sign_in("nurse")
    today = console.api.clock().date().isoformat()
    csv_text = f"test_type,symptom_date,test_date\nconfirmed,{today},\nbogus,{today},\n"

    response = console.api.client.post(
        "/console/lab/bulk",
        data={"csrf": console.form_token("/console/lab")},
        files={"file": ("codes.csv", csv_text.encode(), "text/csv")},
    )

    assert response.status_code == 400
    assert "<td>3</td>" in response.text  # the file's third line
    assert "(invalid_test_type)" in response.text
    with console.api.session() as session:
        assert session.scalars(select(VerificationCode)).all() == []


def test_a_good_bulk_upload_issues_every_row(console: Console) -> None:
    console.add_staff("nurse")
    console.sign_in("nurse")
    today = console.api.clock().date().isoformat()
    csv_text = f"confirmed,{today},\nlikely,,{today}\n"

    response = console.api.client.post(
        "/console/lab/bulk",
        data={"csrf": console.form_token("/console/lab")},
        files={"file": ("codes.csv", csv_text.encode(), "text/csv")},
    )

    assert response.status_code == 200
    with console.api.session() as session:
        assert len(session.scalars(select(VerificationCode)).all()) == 2


def test_the_verification_purge_deletes_expired_sessions_and_disabled_accounts(
    console: Console,
) -> None:
    console.add_staff("nurse")
    console.add_staff("leaver")
    console.sign_in("nurse")
    with unit_of_work(console.api.sessions) as session:
        service.disable_staff(
            session,
            realm=realms.find_realm(session, "lab"),
            username="leaver",
            now=console.api.clock(),
            actor="test",
        )
    retention = console.api.client.app.state.deployment.verification.retention  # type: ignore[attr-defined]

    retention.purge(console.api.clock() + timedelta(hours=8, minutes=30))
    with console.api.session() as session:
        sessions_after_a_day = len(session.scalars(select(StaffSession)).all())
    retention.purge(console.api.clock() + timedelta(days=31))
    with console.api.session() as session:
        left = [account.username for account in session.scalars(select(StaffAccount))]
        sessions = session.scalars(select(StaffSession)).all()

    assert sessions_after_a_day == 1  # expired at 8 h, kept a day after that
    assert sessions == []
    assert left == ["nurse"]


def test_an_auditor_sees_compliance_the_log_and_downloads_a_log_that_verifies(
    console: Console,
) -> None:
    console.add_staff("checker", StaffRole.AUDITOR)
    retention = console.api.client.app.state.deployment.verification.retention  # type: ignore[attr-defined]
    retention.purge(console.api.clock())
    assert console.sign_in("checker") == 303

    compliance = console.api.client.get("/console/audit")
    log = console.api.client.get("/console/audit/log", params={"kind": "staff-sessions"})
    download = console.api.client.get("/console/audit/export")
    lab = console.api.client.get("/console/lab")

    assert compliance.status_code == 200
    assert 'id="chain-status" data-ok="true"' in compliance.text
    assert "disabled-staff-accounts" in compliance.text
    assert log.text.count("<td>staff-sessions</td>") == 1
    assert "<td>verification-codes</td>" not in log.text
    assert "attachment" in download.headers["content-disposition"]
    report = verify_document(download.json(), public_key=retention.public_keys)
    assert report.ok
    assert report.entries_checked >= 1
    assert lab.status_code == 403


def test_a_lab_user_cannot_read_the_retention_log(console: Console) -> None:
    console.add_staff("nurse")
    console.sign_in("nurse")

    assert console.api.client.get("/console/audit").status_code == 403
    assert console.api.client.get("/console/audit/export").status_code == 403


def _issued_counts(page: str) -> list[str]:
    table = page[page.index('id="counts"') : page.index("</table>", page.index('id="counts"'))]
    first_row = table[table.index("<tbody>") :].split("</tr>")[0]
    return re.findall(r"<td>([^<]*)</td>", first_row)[1:]


def test_a_realm_admin_sees_daily_counts_with_small_ones_hidden(console: Console) -> None:
    console.add_staff("boss", StaffRole.REALM_ADMIN)
    console.sign_in("boss")
    for _ in range(2):
        console.issue()
    few = console.api.client.get("/console/admin")
    for _ in range(4):
        console.issue()
    more = console.api.client.get("/console/admin")

    assert few.status_code == 200
    assert _issued_counts(few.text) == ["&lt; 5", "&lt; 5", "&lt; 5"]
    assert _issued_counts(more.text) == ["6", "&lt; 5", "&lt; 5"]
    assert 'id="signing-keys"' in more.text
    assert "boss" in more.text


def test_only_a_realm_admin_sees_the_realm_page(console: Console) -> None:
    console.add_staff("nurse")
    console.sign_in("nurse")

    assert console.api.client.get("/console/admin").status_code == 403


# ---- the realm admin's changes ------------------------------------------------------------


def _admin_post(console: Console, path: str, **fields: str) -> tuple[int, str]:
    data = {"csrf": console.form_token("/console/admin"), **fields}
    response = console.api.client.post(path, data=data)
    return response.status_code, response.text


def _audit_entries(console: Console) -> list[AuditEntry]:
    with console.api.session() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        session.expunge_all()
    return entries


def _other_realm(console: Console) -> int:
    bundle = console.api.client.app.state.deployment.verification  # type: ignore[attr-defined]
    with unit_of_work(bundle.session_factory) as session:
        created = realms.create_realm(
            session, bundle.context, name="other", now=console.api.clock(), actor="test"
        )
        return created.admin_key.record.id


def _issue_with(console: Console, api_key: str) -> int:
    response = console.api.client.post(
        "/api/issue",
        json={"testType": "confirmed", "symptomDate": console.api.clock().date().isoformat()},
        headers={"X-API-Key": api_key},
    )
    return response.status_code


def test_a_realm_admin_creates_an_api_key_shown_once_that_works(console: Console) -> None:
    console.add_staff("boss", StaffRole.REALM_ADMIN)
    console.sign_in("boss")

    status, page = _admin_post(console, "/console/admin/api-keys", kind="admin", name="hospital")
    key = re.search(r'id="api-key">([A-Za-z0-9_-]+)<', page)
    assert status == 200
    assert key is not None
    overview = console.api.client.get("/console/admin").text

    assert _issue_with(console, key.group(1)) == 200
    assert key.group(1) not in overview
    assert "hospital" in overview
    entries = _audit_entries(console)
    created = [entry for entry in entries if entry.action == "created admin API key"][-1]
    assert created.actor.startswith("staff:")
    assert all(key.group(1) not in f"{entry.diff} {entry.target}" for entry in entries)


def test_a_realm_admin_disables_an_api_key_of_their_realm_only(console: Console) -> None:
    console.add_staff("boss", StaffRole.REALM_ADMIN)
    console.sign_in("boss")
    _, page = _admin_post(console, "/console/admin/api-keys", kind="admin", name="spare")
    key = re.search(r'id="api-key">([A-Za-z0-9_-]+)<', page)
    key_id = re.search(r'id="api-key-id">(\d+)<', page)
    assert key is not None
    assert key_id is not None
    foreign_id = _other_realm(console)

    disabled = _admin_post(console, "/console/admin/api-keys/disable", id=key_id.group(1))
    foreign = _admin_post(console, "/console/admin/api-keys/disable", id=str(foreign_id))
    garbage = _admin_post(console, "/console/admin/api-keys/disable", id="1 OR 1=1")

    assert disabled[0] == 200
    assert 'id="admin-done"' in disabled[1]
    assert _issue_with(console, key.group(1)) == 401
    assert foreign[0] == garbage[0] == 400
    with console.api.session() as session:
        assert realms.get_api_key(session, foreign_id).disabled_at is None
    assert "disabled admin API key" in [entry.action for entry in _audit_entries(console)]


def test_an_api_key_with_a_bad_kind_or_name_is_not_created(console: Console) -> None:
    console.add_staff("boss", StaffRole.REALM_ADMIN)
    console.sign_in("boss")
    with console.api.session() as session:
        before = len(realms.list_api_keys(session))

    kind = _admin_post(console, "/console/admin/api-keys", kind="root", name="x")
    name = _admin_post(console, "/console/admin/api-keys", kind="device", name=" ")
    long_name = _admin_post(console, "/console/admin/api-keys", kind="device", name="n" * 101)

    assert [kind[0], name[0], long_name[0]] == [400] * 3
    assert 'id="admin-error"' in kind[1]
    with console.api.session() as session:
        assert len(realms.list_api_keys(session)) == before


def test_a_realm_admin_creates_and_disables_a_staff_account(console: Console) -> None:
    console.add_staff("boss", StaffRole.REALM_ADMIN)
    console.sign_in("boss")

    created = _admin_post(
        console, "/console/admin/staff", username="nurse2", role="lab", password=PASSWORD
    )
    with console.api.session() as session:
        account = session.scalars(
            select(StaffAccount).where(StaffAccount.username == "nurse2")
        ).one()
        assert account.password_hash.startswith("$argon2id$")
        assert account.role == "lab"
    console.api.client.cookies.clear()
    assert console.sign_in("nurse2") == 303
    console.api.client.cookies.clear()
    console.sign_in("boss")
    disabled = _admin_post(console, "/console/admin/staff/disable", username="nurse2")
    yourself = _admin_post(console, "/console/admin/staff/disable", username="boss")

    assert created[0] == 200
    assert disabled[0] == 200
    assert yourself[0] == 400
    with console.api.session() as session:
        assert (
            session.scalars(select(StaffSession).where(StaffSession.staff_id == account.id)).all()
            == []
        )
    assert console.sign_in("nurse2") == 401
    actions = [entry.action for entry in _audit_entries(console)]
    assert {"created staff account", "disabled staff account"} <= set(actions)
    assert all(PASSWORD not in entry.diff for entry in _audit_entries(console))


def test_a_weak_password_or_taken_username_creates_no_account(console: Console) -> None:
    console.add_staff("boss", StaffRole.REALM_ADMIN)
    console.sign_in("boss")

    weak = _admin_post(console, "/console/admin/staff", username="n", role="lab", password="1")
    taken = _admin_post(
        console, "/console/admin/staff", username="boss", role="lab", password=PASSWORD
    )
    role = _admin_post(
        console, "/console/admin/staff", username="n", role="root", password=PASSWORD
    )

    assert [weak[0], taken[0], role[0]] == [400] * 3
    with console.api.session() as session:
        assert [account.username for account in session.scalars(select(StaffAccount))] == ["boss"]


def test_a_realm_admin_changes_code_lifetimes_and_quota_within_bounds(console: Console) -> None:
    console.add_staff("boss", StaffRole.REALM_ADMIN)
    console.sign_in("boss")
    limits = {"short_code_minutes": "20", "long_code_minutes": "600", "daily_issue_limit": "50"}

    changed = _admin_post(console, "/console/admin/limits", **limits)
    refused = [
        _admin_post(console, "/console/admin/limits", **{**limits, name: value})[0]
        for name, value in [
            ("short_code_minutes", "0"),
            ("short_code_minutes", "100000"),
            ("long_code_minutes", "10"),
            ("daily_issue_limit", "0"),
            ("daily_issue_limit", "many"),
        ]
    ]

    assert changed[0] == 200
    assert refused == [400] * 5
    with console.api.session() as session:
        realm = realms.find_realm(session, "lab")
        stored = (realm.short_code_minutes, realm.long_code_minutes, realm.daily_issue_limit)
    assert stored == (20, 600, 50)
    entry = [e for e in _audit_entries(console) if e.action == "changed realm code limits"]
    assert len(entry) == 1
    assert "short_code_minutes=15->20" in entry[0].diff
    code, _ = _code_of(console.issue())
    with console.api.session() as session:
        issued = session.scalars(select(VerificationCode)).one()
        lifetime = issued.expires_at - console.api.clock()
    assert code
    assert abs(lifetime - timedelta(minutes=20)) < timedelta(minutes=1)


@pytest.mark.parametrize("role", [StaffRole.LAB, StaffRole.AUDITOR])
def test_only_a_realm_admin_may_change_the_realm(console: Console, role: StaffRole) -> None:
    console.add_staff("someone", role)
    console.sign_in("someone")
    start = "/console/lab" if role == StaffRole.LAB else "/console/audit"
    csrf = console.form_token(start)
    posts = {
        "/console/admin/api-keys": {"kind": "admin", "name": "mine"},
        "/console/admin/api-keys/disable": {"id": "1"},
        "/console/admin/staff": {"username": "x", "role": "realm_admin", "password": PASSWORD},
        "/console/admin/staff/disable": {"username": "someone"},
        "/console/admin/staff/remove-second-factor": {"username": "someone"},
        "/console/admin/limits": {
            "short_code_minutes": "20",
            "long_code_minutes": "600",
            "daily_issue_limit": "50",
        },
    }

    statuses = [
        console.api.client.post(path, data={"csrf": csrf, **fields}).status_code
        for path, fields in posts.items()
    ]

    assert statuses == [403] * len(posts)
    with console.api.session() as session:
        assert all(key.disabled_at is None for key in realms.list_api_keys(session))
        assert len(realms.list_api_keys(session)) == 2
        assert len(list(session.scalars(select(StaffAccount)))) == 1
        assert realms.find_realm(session, "lab").daily_issue_limit != 50


def test_an_admin_form_without_its_csrf_token_is_refused(console: Console) -> None:
    console.add_staff("boss", StaffRole.REALM_ADMIN)
    console.sign_in("boss")

    response = console.api.client.post(
        "/console/admin/api-keys", data={"kind": "admin", "name": "x"}
    )

    assert response.status_code == 403
    with console.api.session() as session:
        assert len(realms.list_api_keys(session)) == 2


def test_the_session_cookie_is_secure_when_the_public_url_is_https(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind a TLS-terminating proxy the process itself speaks plain http; the public URL
    # is what says the browser reached it over TLS.
    monkeypatch.setenv("EXPOSURE_PUBLIC_URL", "https://verify.example")
    for api in make_api(database_url, tmp_path):
        api.client.base_url = "https://verify.example"  # the browser's view of the server
        console = Console(api, "")
        console.add_staff("nurse")
        csrf = console.form_token("/console/sign-in")
        response = api.client.post(
            "/console/sign-in",
            data={"csrf": csrf, "realm": "lab", "username": "nurse", "password": PASSWORD},
            follow_redirects=False,
        )

        assert response.status_code == 303
        [session_cookie] = [
            cookie
            for cookie in response.headers.get_list("set-cookie")
            if cookie.startswith("console_session=")
        ]
        assert "secure" in session_cookie.lower().split("; ")


# ---- a staff member adds an authenticator app -----------------------------------------------


def _account_form(console: Console) -> tuple[str, str, str]:
    """The account page's CSRF token, sealed pending secret and shown secret."""
    page = console.api.client.get("/console/account")
    assert page.status_code == 200, page.text
    found = [
        re.search(pattern, page.text)
        for pattern in (
            r'name="csrf" value="([^"]+)"',
            r'name="pending" value="([^"]+)"',
            r'id="second-factor-secret">([A-Z2-7]+)<',
        )
    ]
    assert all(found), page.text
    csrf, pending, secret = (match.group(1) for match in found if match)
    return csrf, pending, secret


def _add_app(console: Console, csrf: str, pending: str, code: str) -> tuple[int, str]:
    response = console.api.client.post(
        "/console/account/second-factor", data={"csrf": csrf, "pending": pending, "code": code}
    )
    return response.status_code, response.text


def _sealed_totp(console: Console, username: str) -> bytes | None:
    with console.api.session() as session:
        account = session.scalars(
            select(StaffAccount).where(StaffAccount.username == username)
        ).one()
        return account.totp_sealed


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def test_a_staff_member_adds_an_authenticator_app_then_needs_its_code(console: Console) -> None:
    console.add_staff("nurse")
    assert console.sign_in("nurse") == 303
    csrf, pending, secret = _account_form(console)
    page = console.api.client.get("/console/account").text
    assert "<svg" in page  # the QR code, inline
    now = console.api.clock().timestamp()

    status, answer = _add_app(console, csrf, pending, pyotp.TOTP(secret).at(now))

    assert status == 200, answer
    assert 'id="second-factor-state"' in answer
    assert 'name="pending"' not in answer
    assert secret not in answer
    assert _sealed_totp(console, "nurse") is not None
    assert [entry.action for entry in _audit_entries(console)][-1] == (
        "staff added a second factor"
    )
    assert all(secret not in (entry.diff or "") for entry in _audit_entries(console))
    console.api.client.cookies.clear()
    assert console.sign_in("nurse") == 401
    assert console.sign_in("nurse", totp=pyotp.TOTP(secret).at(now)) == 303


def test_a_wrong_code_stores_nothing_and_shows_the_same_secret(console: Console) -> None:
    console.add_staff("nurse")
    console.sign_in("nurse")
    csrf, pending, secret = _account_form(console)
    right = pyotp.TOTP(secret).at(console.api.clock().timestamp())

    status, answer = _add_app(console, csrf, pending, _wrong(right))

    assert status == 400
    assert 'id="second-factor-error"' in answer
    assert f'id="second-factor-secret">{secret}<' in answer
    assert _sealed_totp(console, "nurse") is None
    assert _add_app(console, csrf, pending, right)[0] == 200


def test_a_changed_or_borrowed_page_secret_is_refused(console: Console) -> None:
    console.add_staff("nurse")
    console.add_staff("doctor")
    console.sign_in("doctor")
    _, doctors_pending, doctors_secret = _account_form(console)
    console.api.client.cookies.clear()
    console.sign_in("nurse")
    csrf, pending, _ = _account_form(console)
    code = pyotp.TOTP(doctors_secret).at(console.api.clock().timestamp())
    key_id, _, data = pending.rpartition(".")
    flipped = f"{key_id}.{data[:-2]}{'A' if data[-2] != 'A' else 'B'}{data[-1]}"

    answers = [
        _add_app(console, csrf, doctors_pending, code),  # sealed for the doctor
        _add_app(console, csrf, flipped, code),
        _add_app(console, csrf, "not sealed", code),
    ]

    assert [status for status, _ in answers] == [400, 400, 400]
    assert all('id="second-factor-error"' in page for _, page in answers)
    assert _sealed_totp(console, "nurse") is None


def test_an_account_with_an_app_cannot_add_another(console: Console) -> None:
    created = console.add_staff("nurse", with_totp=True)
    assert created.totp_secret is not None
    now = console.api.clock().timestamp()
    console.sign_in("nurse", totp=pyotp.TOTP(created.totp_secret).at(now))
    page = console.api.client.get("/console/account")
    assert page.status_code == 200
    assert 'name="pending"' not in page.text
    before = _sealed_totp(console, "nurse")
    # A page opened before the app was added, posted afterwards.
    with console.api.session() as session:
        staff = service.current_staff(
            session,
            console.api.client.app.state.deployment.verification.console,  # type: ignore[attr-defined]
            console.api.client.cookies["console_session"],
            console.api.clock(),
        )
    assert staff is not None
    stale = service.new_second_factor(
        console.api.client.app.state.deployment.verification.console,  # type: ignore[attr-defined]
        staff,
    )
    csrf = console.form_token("/console/account")

    status, answer = _add_app(console, csrf, stale.sealed, pyotp.TOTP(stale.secret).at(now))

    assert status == 409
    assert 'id="second-factor-error"' in answer
    assert _sealed_totp(console, "nurse") == before


def test_the_account_page_needs_a_session_and_its_form_a_csrf_token(console: Console) -> None:
    anonymous = console.api.client.get("/console/account", follow_redirects=False)
    assert anonymous.status_code == 303
    console.add_staff("nurse")
    console.sign_in("nurse")
    _, pending, secret = _account_form(console)
    code = pyotp.TOTP(secret).at(console.api.clock().timestamp())

    status, _ = _add_app(console, "forged", pending, code)

    assert status == 403
    assert _sealed_totp(console, "nurse") is None


def test_a_realm_admin_removes_a_lost_app_and_the_account_is_signed_out(
    console: Console,
) -> None:
    console.add_staff("boss", StaffRole.REALM_ADMIN)
    created = console.add_staff("nurse", with_totp=True)
    assert created.totp_secret is not None
    now = console.api.clock().timestamp()
    assert console.sign_in("nurse", totp=pyotp.TOTP(created.totp_secret).at(now)) == 303
    console.api.client.cookies.clear()
    console.sign_in("boss")
    page = console.api.client.get("/console/admin").text
    assert 'action="/console/admin/staff/remove-second-factor"' in page

    own = _admin_post(console, "/console/admin/staff/remove-second-factor", username="boss")
    unknown = _admin_post(console, "/console/admin/staff/remove-second-factor", username="x")
    removed = _admin_post(console, "/console/admin/staff/remove-second-factor", username="nurse")

    assert own[0] == 400
    assert 'id="admin-error"' in own[1]
    assert unknown[0] == 400
    assert removed[0] == 200
    assert 'id="admin-done"' in removed[1]
    assert _sealed_totp(console, "nurse") is None
    with console.api.session() as session:
        signed_in = {row.staff_id for row in session.scalars(select(StaffSession))}
    assert created.account.id not in signed_in  # the nurse's session ended
    assert signed_in  # the admin's did not
    assert [entry.action for entry in _audit_entries(console)][-1] == (
        "removed staff second factor"
    )
    assert console.sign_in("nurse") == 303
