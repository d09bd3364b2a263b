"""The staff console in a real browser (system Chromium) against a real ``exposure serve``:
a lab user issues a code and a phone redeems it; a bulk upload with a bad row issues
nothing; another realm's staff cannot see the code; a cross-site form post is refused.
Each main page is photographed at phone and desktop widths; the pictures replace the ones
in docs/console/ (linked from docs/console.md) only when EXPOSURE_WRITE_SCREENSHOTS=1
(``make screenshots``), so that a test run leaves the tree as it found it."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.sync_api import Page

from tests.accessibility import accessibility_problems
from tests.browser import browser_page
from tests.e2e.conftest import EXPOSURE, RunningServer, clean_environment, run_cli, start_server

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
#: Set to 1 to rewrite the committed screenshots in docs/console/ (``make screenshots``).
WRITE_SCREENSHOTS_VARIABLE = "EXPOSURE_WRITE_SCREENSHOTS"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PASSWORD = "a long console password"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
#: The staff's time zone (the CLI's default); "today" on the lab's form is this zone's day.
LAB_ZONE_OFFSET = timedelta(hours=7)


@pytest.fixture
def console_server(tmp_path: Path) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    data_dir = tmp_path / "var"
    running = start_server(data_dir)
    keys: dict[str, str] = {}
    for realm in ("lab", "other"):
        created = run_cli(data_dir, "admin", "realm", "create", realm, "--json")
        assert created.returncode == 0, created.stderr
        keys[realm] = json.loads(created.stdout)["device_api_key"]
    for realm, username, role, language in (
        ("lab", "nurse", "lab", "en"),
        ("other", "stranger", "lab", "vi"),
        ("lab", "checker", "auditor", "vi"),
        ("lab", "boss", "realm_admin", "en"),
    ):
        added = subprocess.run(
            [
                str(EXPOSURE),
                "admin",
                "staff",
                "add",
                realm,
                username,
                "--role",
                role,
                "--language",
                language,
                "--password-stdin",
                "--json",
            ],
            input=f"{PASSWORD}\n",
            env=clean_environment(data_dir),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert added.returncode == 0, added.stderr
    yield running, keys
    if running.process.poll() is None:
        running.stop()


def _png_width(image: bytes) -> int:
    """The width a PNG declares in its header chunk (IHDR), which comes first."""
    assert image.startswith(_PNG_SIGNATURE)
    assert image[12:16] == b"IHDR"
    width: int = struct.unpack(">I", image[16:20])[0]
    return width


def _shoot(page: Page, name: str) -> None:
    """Check the page's accessibility basics, then photograph it at phone and desktop
    widths; the pictures are written to docs/console/ only when asked for."""
    write = os.environ.get(WRITE_SCREENSHOTS_VARIABLE) == "1"
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        assert accessibility_problems(page) == [], f"{name} at {label} width"
        # Taken in memory either way: rendering the whole page is part of the test.
        image = page.screenshot(full_page=True)
        assert _png_width(image) == size["width"], f"{name} at {label} width"
        if write:
            SCREENSHOTS.mkdir(exist_ok=True)
            (SCREENSHOTS / f"{name}-{label}.png").write_bytes(image)


def _submit_sign_in(page: Page, realm: str, username: str, totp: str = "") -> None:
    """Fill the sign-in form on the page shown and send it."""
    page.get_by_label("Realm").fill(realm)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    if totp:
        page.get_by_label("Authenticator code (if you have one)").fill(totp)
    page.get_by_role("button", name="Sign in").click()


def _sign_in(
    page: Page, base_url: str, realm: str, username: str, heading: str = "Verification codes"
) -> None:
    page.goto(f"{base_url}/console")
    _submit_sign_in(page, realm, username)
    page.get_by_role("heading", name=heading, exact=True).wait_for()


def test_a_lab_user_issues_a_code_a_phone_redeems_and_sees_it_claimed(
    console_server: tuple[RunningServer, dict[str, str]],
) -> None:
    server, keys = console_server
    with browser_page() as page:
        page.goto(f"{server.base_url}/console")
        _shoot(page, "sign-in")
        _sign_in(page, server.base_url, "lab", "nurse")
        _shoot(page, "lab")
        page.get_by_role("button", name="Issue code", exact=True).click()
        page.locator("#code").wait_for()
        code = page.locator("#code").inner_text().strip()
        uuid = page.locator("#code-uuid").inner_text().strip()
        countdown = page.locator("#expires-in").inner_text()
        _shoot(page, "issued")

        verified = httpx.post(
            f"{server.base_url}/api/verify", json={"code": code}, headers={"X-API-Key": keys["lab"]}
        )
        page.goto(f"{server.base_url}/console/lab/status?uuid={uuid}")
        status = page.locator("#status-value").get_attribute("data-status")
        _shoot(page, "status")

    assert code.isdigit()
    assert len(code) == 8
    assert ":" in countdown  # the script counts down (the page says "about N minutes" without it)
    assert verified.status_code == 200, verified.text
    assert status == "claimed"


def test_a_bulk_upload_with_one_bad_row_issues_nothing_and_names_the_row(
    console_server: tuple[RunningServer, dict[str, str]], tmp_path: Path
) -> None:
    server, _keys = console_server
    today = (datetime.now(UTC) + LAB_ZONE_OFFSET).date().isoformat()
    upload = tmp_path / "codes.csv"
    upload.write_text(f"test_type,symptom_date,test_date\nconfirmed,{today},\nbogus,{today},\n")
    with browser_page() as page:
        _sign_in(page, server.base_url, "lab", "nurse")
        page.get_by_label("CSV file", exact=True).set_input_files(str(upload))
        page.get_by_role("button", name="Issue codes").click()
        page.locator("#row-errors").wait_for()
        errors = page.locator("#row-errors").inner_text()
        _shoot(page, "bulk-errors")

    assert "No code was issued" in errors
    assert "invalid_test_type" in errors
    listed = run_cli(server.data_dir, "audit", "log", "--json")
    assert "issued verification code" not in listed.stdout


def test_staff_of_another_realm_cannot_see_the_code(
    console_server: tuple[RunningServer, dict[str, str]],
) -> None:
    server, _keys = console_server
    with browser_page() as page:
        _sign_in(page, server.base_url, "lab", "nurse")
        page.get_by_role("button", name="Issue code", exact=True).click()
        uuid = page.locator("#code-uuid").inner_text().strip()
    with browser_page() as page:
        _sign_in(page, server.base_url, "other", "stranger", heading="Mã xác minh")
        page.get_by_label("Định danh mã").fill(uuid)
        page.get_by_role("button", name="Kiểm tra trạng thái").click()
        page.locator("#status-error").wait_for()

        assert page.locator("#code-status").count() == 0


def test_a_cross_site_form_post_is_refused(
    console_server: tuple[RunningServer, dict[str, str]],
) -> None:
    server, _keys = console_server
    other_site = start_server(server.data_dir.parent / "attacker")
    try:
        with browser_page() as page:
            _sign_in(page, server.base_url, "lab", "nurse")
            # A page of another origin (another port is another site for the browser's
            # Origin header) posts the lab's issue form at the console.
            page.goto(f"{other_site.base_url}/health/live")
            page.set_content(
                f'<form method="post" action="{server.base_url}/console/lab/issue">'
                '<input name="test_type" value="confirmed"><input name="date_kind" '
                'value="symptom"><input name="csrf" value="guessed"><button>go</button></form>'
            )
            with page.expect_navigation():
                page.get_by_role("button", name="go").click()
            text = page.content()
    finally:
        other_site.stop()

    assert "Refused" in text
    assert 'id="code"' not in text


def test_an_auditor_sees_a_purge_appear_and_a_tampered_log_shown_broken(
    console_server: tuple[RunningServer, dict[str, str]],
) -> None:
    server, _keys = console_server
    with browser_page() as page:
        _sign_in(page, server.base_url, "lab", "checker", heading="Lưu giữ dữ liệu")
        page.goto(f"{server.base_url}/console/audit/log")
        before = page.locator("#log tbody tr").count()

        # The server's own scheduler purged once at start; a manual run adds a run's worth.
        purged = run_cli(server.data_dir, "jobs", "run", "purge")
        assert purged.returncode == 0, purged.stderr
        page.reload()
        after = page.locator("#log tbody tr").count()
        page.get_by_label("Loại").select_option("staff-sessions")
        page.get_by_role("button", name="Lọc").click()
        page.locator("#log tbody tr").first.wait_for()
        sessions_rows = page.locator("#log tbody tr").count()
        intact = page.locator("#chain-status").get_attribute("data-ok")
        page.goto(f"{server.base_url}/console/audit")
        _shoot(page, "audit")
        page.goto(f"{server.base_url}/console/audit/log")
        _shoot(page, "audit-log")

        _tamper(server.data_dir / "verification.sqlite3")
        page.goto(f"{server.base_url}/console/audit")
        broken = page.locator("#chain-status").inner_text()
        broken_flag = page.locator("#chain-status").get_attribute("data-ok")
        _shoot(page, "audit-broken")

    assert after > before
    assert sessions_rows >= 1
    assert intact == "true"
    assert broken_flag == "false"
    assert broken.startswith("HỎNG tại mục 1: link")  # the checker reads Vietnamese


def _tamper(database: Path) -> None:
    """Change what the first entry of the verification log says it removed."""
    with sqlite3.connect(database) as connection:
        (entry,) = connection.execute(
            "SELECT entry FROM retention_log WHERE service = 'verification' AND seq = 1"
        ).fetchone()
        body = json.loads(entry)
        body["rows"] = int(body["rows"]) + 1
        changed = json.dumps(body, sort_keys=True, separators=(",", ":"))
        connection.execute(
            "UPDATE retention_log SET entry = ? WHERE service = 'verification' AND seq = 1",
            (changed,),
        )


def test_a_realm_admin_sees_the_realm_s_keys_staff_and_counts(
    console_server: tuple[RunningServer, dict[str, str]],
) -> None:
    server, _keys = console_server
    with browser_page() as page:
        _sign_in(page, server.base_url, "lab", "boss")
        page.get_by_role("link", name="Realm", exact=True).click()
        page.locator("#counts").wait_for()
        staff = page.locator("#staff").inner_text()
        states = page.locator("#signing-keys").inner_text()
        _shoot(page, "admin")

    assert "nurse" in staff
    assert "stranger" not in staff  # another realm's
    assert "signing" in states


def test_a_realm_admin_creates_an_api_key_read_once_that_issues_codes(
    console_server: tuple[RunningServer, dict[str, str]],
) -> None:
    server, _keys = console_server
    with browser_page() as page:
        _sign_in(page, server.base_url, "lab", "boss")
        page.get_by_role("link", name="Realm", exact=True).click()
        page.locator("#key-name").fill("hospital")
        page.get_by_label("Kind").select_option("admin")
        page.get_by_role("button", name="Create API key").click()
        page.locator("#api-key").wait_for()
        api_key = page.locator("#api-key").inner_text().strip()
        _shoot(page, "api-key-created")
        page.get_by_role("link", name="Back to the realm").click()
        page.locator("#api-keys").wait_for()
        listed = page.locator("#api-keys").inner_text()
        realm_page = page.content()

    today = (datetime.now(UTC) + LAB_ZONE_OFFSET).date().isoformat()
    issued = httpx.post(
        f"{server.base_url}/api/issue",
        json={"testType": "confirmed", "symptomDate": today, "tzOffset": 420},
        headers={"X-API-Key": api_key},
    )
    assert len(api_key) >= 40
    assert "hospital" in listed
    assert api_key not in realm_page
    assert issued.status_code == 200, issued.text
    assert issued.json()["code"]
    assert api_key not in server.stop()  # nor in the server's log


def test_a_lab_user_posting_the_admin_form_is_refused(
    console_server: tuple[RunningServer, dict[str, str]],
) -> None:
    server, _keys = console_server
    with browser_page() as page:
        _sign_in(page, server.base_url, "lab", "nurse")
        csrf = page.locator('input[name="csrf"]').first.get_attribute("value") or ""
        # The nurse's own, valid CSRF token, with the nurse's session cookie.
        answer = page.request.post(
            f"{server.base_url}/console/admin/api-keys",
            form={"csrf": csrf, "kind": "admin", "name": "mine"},
        )
        text = answer.text()

    assert answer.status == 403
    assert 'id="api-key"' not in text
    listed = run_cli(server.data_dir, "admin", "apikey", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "mine" not in listed.stdout


def test_a_lab_user_adds_an_authenticator_app_and_then_signs_in_with_it(
    console_server: tuple[RunningServer, dict[str, str]],
) -> None:
    server, _ = console_server
    with browser_page() as page:
        _sign_in(page, server.base_url, "lab", "nurse")
        page.get_by_role("link", name="Your account").click()
        page.get_by_role("heading", name="Authenticator app").wait_for()
        qr_code = page.get_by_role("img", name="QR code of the key for your authenticator app")
        qr_visible = qr_code.is_visible()
        _shoot(page, "account")
        secret = page.locator("#second-factor-secret").inner_text().strip()
        page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Save").click()
        page.get_by_text("The authenticator app is added.").wait_for()
        page.get_by_role("button", name="Sign out").click()

        _submit_sign_in(page, "lab", "nurse")
        without_code = page.locator("#sign-in-error").count()
        _submit_sign_in(page, "lab", "nurse", totp=pyotp.TOTP(secret).now())
        page.get_by_role("heading", name="Verification codes", exact=True).wait_for()

    assert qr_visible
    assert len(secret) == 32
    assert without_code == 1
