"""The console in a real headless Chromium (Debian's, driven by Playwright), against a live server.

What is stubbed, and why: the Exchange connection check and the scheduling of passes are the
runtime's and the engine's, tested on their own against the simulator. Here ``runtime.start``
runs for real (state machine, audit, status) with the connection check answering OK and the
first pass recorded as the scheduler's pass would record it, so the console's job — showing
the state, the first pass, the messages, and enforcing roles — is what these tests check.
"""

from __future__ import annotations

import os
import re
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from synccore.models import Environment, FieldMapping, SyncRun, SyncUser
from synccore.runtime import scheduling
from synccore.runtime import service as runtime
from synccore.sync.connection import ConnectionReport
from tests.conftest import PROJECT_DIR, require
from tests.fixtures.api import user_with_role

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The screenshots in docs/ are refreshed on purpose (UPDATE_DOCS_SCREENSHOTS=1), not by every run.
DOCS = PROJECT_DIR / "docs"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    for candidate in ("/usr/lib/chromium/chromium", "/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture
def browser(monkeypatch):
    path = chromium_path()
    require(path is not None, "Debian's Chromium (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls made here are not async.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def demo(monkeypatch):
    out = StringIO()
    call_command("seed_demo", "--users", "3", "--contacts", "10", "--activities", "6", stdout=out)
    username, password = re.search(r"^Login: (\S+) / (\S+)$", out.getvalue(), re.MULTILINE).groups()
    monkeypatch.setattr(
        runtime,
        "test_connection",
        lambda env_id: ConnectionReport(ok=True, tried=["EWS GetFolder on the simulator (stubbed)"]),
    )
    monkeypatch.setattr(scheduling, "schedule_environment", _record_first_passes)
    return Environment.objects.get(name="Demo"), username, password


def _record_first_passes(env: Environment) -> None:
    """Stands in for the scheduler: the first pass of each active user, as a pass records it."""
    now = timezone.now()
    for user in SyncUser.objects.filter(environment=env, active=True):
        for kind in ("contacts", "calendar"):
            SyncRun.objects.create(
                environment=env,
                sync_user=user,
                kind=kind,
                trigger="start",
                outcome="success",
                started_at=now,
                finished_at=now,
                created=10 if kind == "contacts" else 0,
                requests=3,
            )
        healthy = {"state": "healthy", "since": now.isoformat()}
        SyncUser.objects.filter(pk=user.pk).update(
            last_contact_pass_at=now,
            last_calendar_pass_at=now,
            kind_health={"contacts": healthy, "calendar": healthy},
        )


def log_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")


def test_an_administrator_starts_edits_and_stops_the_demo_environment(browser, live_server, demo, tmp_path):
    from playwright.sync_api import expect

    shots = DOCS if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1" else tmp_path

    env, username, password = demo
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmation on Stop
    log_in(page, live_server.url, username, password)

    row = page.locator(f'tr[data-env="{env.pk}"]')
    expect(row.locator('[data-field="state"]')).to_have_text("Stopped")
    expect(row.locator('[data-field="last_pass"]')).to_have_text("—")

    row.locator('[data-action="start"]').click()
    expect(page.locator(".message.success")).to_contain_text("started")
    expect(row.locator('[data-field="state"]')).to_have_text("Running")
    expect(row.locator('[data-field="last_pass"]')).not_to_have_text("—")
    expect(row.locator('[data-field="healthy"]')).to_have_text("3")
    assert SyncRun.objects.filter(environment=env, trigger="start").count() == 3 * 2

    # The overview follows the state without a reload (another operator stops and restarts it).
    runtime.stop(env.pk)
    expect(row.locator('[data-field="state"]')).to_have_text("Stopped", timeout=15_000)
    # Refreshed times read like the server's (its time zone, Y-m-d H:i:s).
    since = Environment.objects.get(pk=env.pk).state_changed_at
    expect(row.locator('[data-field="since"]')).to_have_text(since.strftime("%Y-%m-%d %H:%M:%S"))
    expect(row.locator('[data-action="start"]')).to_be_visible()
    runtime.start(env.pk)
    expect(row.locator('[data-field="state"]')).to_have_text("Running", timeout=15_000)
    page.set_viewport_size({"width": 1440, "height": 400})
    page.screenshot(path=str(shots / "screenshot-overview.png"))
    page.set_viewport_size({"width": 1440, "height": 1000})

    expect(row.locator('[data-action="start"]')).to_be_hidden()
    row.locator("a", has_text=env.name).click()
    expect(page.locator("h1 [data-field=state]")).to_have_text("Running")
    expect(
        page.locator('tr[data-user="alice@contoso.example"] [data-field="contacts_last"]')
    ).not_to_have_text("—")
    page.screenshot(path=str(shots / "screenshot-environment.png"))

    # Test connection reports what it tried (through the API, with the session and its CSRF token).
    page.click('[data-tab="settings"]')
    page.click('[data-action="test-connection"]')
    report = page.locator('[data-field="connection-report"]')
    expect(report).to_contain_text("Connection OK.")
    expect(report).to_contain_text("EWS GetFolder on the simulator (stubbed)")

    # A pass in flight shows its progress without a reload.
    alice = SyncUser.objects.get(environment=env, mailbox_email="alice@contoso.example")
    SyncRun.objects.create(
        environment=env,
        sync_user=alice,
        kind="calendar",
        trigger="full",
        outcome="running",
        progress_done=3,
        progress_total=10,
    )
    page.click('[data-tab="users"]')
    progress = page.locator('tr[data-user="alice@contoso.example"] [data-field="progress"]')
    expect(progress).to_be_visible(timeout=15_000)
    expect(progress).to_have_attribute("value", "30")

    # Edit a field mapping: job title goes to the Exchange "Office" field instead.
    page.click('[data-tab="mapping"]')
    mapping_row = page.locator('tr[data-mapping="contact:job_title"]')
    mapping_row.locator("select[name$=exchange_field]").select_option("office_location")
    mapping_row.locator('[data-action="save-mapping"]').click()
    expect(page.locator(".message.success")).to_contain_text("Mapping saved")
    assert FieldMapping.objects.get(
        environment=env, entity="contact", crm_field="job_title"
    ).exchange_field == ("office_location")

    # An invalid pull interval is refused with its message (on the Settings tab it was sent from).
    interval = env.settings.pull_interval
    page.click('[data-tab="settings"]')
    page.fill("#id_pull_interval", "0")
    page.click('[data-action="save-settings"]')
    expect(page.locator(".field-error")).to_contain_text("The pull interval must be greater than zero.")
    env.settings.refresh_from_db()
    assert env.settings.pull_interval == interval

    page.locator('.env-head [data-action="stop"]').click()
    expect(page.locator(".message.success")).to_contain_text("stopped")
    expect(page.locator("h1 [data-field=state]")).to_have_text("Stopped")
    env.refresh_from_db()
    assert env.state == "stopped"

    # The audit log names who started, changed and stopped it.
    page.click("text=Audit log")
    log = page.locator("table.grid tbody")
    for action in ("Start", "Stop", "Field mapping changed"):
        expect(log.locator("tr", has_text=action).first).to_contain_text(username)


def test_a_viewer_sees_no_start_button_and_cannot_post_start(browser, live_server, demo):
    from playwright.sync_api import expect

    env, _, _ = demo
    viewer = user_with_role("viewer")
    context = browser.new_context()
    page = context.new_page()
    log_in(page, live_server.url, viewer.username, "pw-Secret-123")

    row = page.locator(f'tr[data-env="{env.pk}"]')
    expect(row.locator('[data-field="state"]')).to_have_text("Stopped")
    expect(page.locator('[data-action="start"]')).to_have_count(0)

    # Posting start directly, with a valid CSRF token, is refused by role (not by CSRF).
    token = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
    response = context.request.post(
        f"{live_server.url}/environments/{env.pk}/start/",
        headers={"X-CSRFToken": token, "Referer": live_server.url + "/"},
    )
    assert response.status == 403
    assert "Your role does not allow this" in response.text()
    api = context.request.post(
        f"{live_server.url}/api/v1/environments/{env.pk}/start/",
        headers={"X-CSRFToken": token, "Referer": live_server.url + "/"},
    )
    assert api.status == 403
    env.refresh_from_db()
    assert env.state == "stopped"
    context.close()


def test_the_chromium_in_use_is_debians_not_a_download():
    path = chromium_path()
    require(path is not None, "Debian's Chromium (apt-get install chromium)")
    assert not path.startswith(str(Path.home() / ".cache")) and "ms-playwright" not in path
    assert os.access(path, os.X_OK)
