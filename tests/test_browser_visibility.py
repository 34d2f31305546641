"""The console in Debian's Chromium (Playwright), as issue 14 asks: tabs instead of one long page,
the users table at 1280 px with every action visible, labels that a live refresh keeps, readable
Test connection failures, the settings of the chosen backend only, checkboxes beside their labels.

The fixtures (Chromium, the demo with a stubbed connection check) are test_browser_console's.
"""

# ruff: noqa: F811  (the fixtures imported from test_browser_console are parameters here)

from __future__ import annotations

import pytest

from synccore.models import SyncUser
from synccore.runtime import service as runtime
from synccore.sync.connection import ConnectionReport
from tests.test_browser_console import browser, demo, log_in  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TABS = ["users", "settings", "filters", "mapping", "history", "conflicts", "attention", "audit"]


def open_environment(browser, live_server, demo, width: int = 1440):
    env, username, password = demo
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, live_server.url, username, password)
    page.goto(f"{live_server.url}/environments/{env.pk}/")
    return env, page


def test_the_environment_page_has_tabs_and_shows_one_at_a_time(browser, live_server, demo):
    from playwright.sync_api import expect

    env, page = open_environment(browser, live_server, demo)
    expect(page.locator("[role=tab]")).to_have_count(len(TABS))
    for name in TABS:
        page.click(f'[data-tab="{name}"]')
        expect(page.locator(f"#{name}")).to_be_visible()
        expect(page.locator("[data-tab-panel]:visible")).to_have_count(1)
        expect(page.locator(f'[data-tab="{name}"]')).to_have_attribute("aria-selected", "true")
    # The address follows the tab: a reload opens the same one.
    assert page.url.endswith("?tab=audit")
    page.reload()
    expect(page.locator("#audit")).to_be_visible()
    expect(page.locator("#users")).to_be_hidden()
    # An anchor of the old one-page layout opens its tab.
    page.goto(f"{live_server.url}/environments/{env.pk}/#mapping")
    expect(page.locator("#mapping")).to_be_visible()


def test_the_users_table_fits_1280_px_with_every_action_visible(browser, live_server, demo):
    from playwright.sync_api import expect

    env, _, _ = demo
    SyncUser.objects.filter(environment=env, mailbox_email="bob@contoso.example").update(
        health="unhealthy",
        last_error="Exchange has no mailbox bob@contoso.example. Check the sync user's mailbox address, "
        "or deactivate it.",
    )
    SyncUser.objects.filter(environment=env, mailbox_email="carol@contoso.example").update(active=False)
    env, page = open_environment(browser, live_server, demo, width=1280)
    actions = page.locator("#users td.actions button, #users td.actions a.button")
    expect(actions.first).to_be_visible()
    assert actions.count() >= 3 * 4
    viewport = page.viewport_size
    for index in range(actions.count()):
        box = actions.nth(index).bounding_box()
        assert box is not None, actions.nth(index).inner_text()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], actions.nth(index).inner_text()
    table = page.locator("#users table").bounding_box()
    card = page.locator("#users").bounding_box()
    assert table["x"] + table["width"] <= card["x"] + card["width"]
    for name in ("re-enable", "remove-synchronized-items", "deactivate", "activate", "edit", "sync-now"):
        expect(page.locator(f'#users [data-action="{name}"]').first).to_be_visible()


def test_a_live_refresh_keeps_the_badges_words(browser, live_server, demo):
    from playwright.sync_api import expect

    env, _, _ = demo
    SyncUser.objects.filter(environment=env, mailbox_email="alice@contoso.example").update(health="held")
    env, page = open_environment(browser, live_server, demo)
    badge = page.locator('tr[data-user="alice@contoso.example"] [data-field="health"]')
    expect(badge).to_have_text("Held by the safety limit")
    expect(page.locator("h1 [data-field=state]")).to_have_text("Stopped")
    # The refresh runs every few seconds: after one, a changed state reads in the same words.
    SyncUser.objects.filter(environment=env, mailbox_email="bob@contoso.example").update(health="backing_off")
    bob = page.locator('tr[data-user="bob@contoso.example"] [data-field="health"]')
    expect(bob).to_have_text("Backing off", timeout=15_000)
    expect(badge).to_have_text("Held by the safety limit")
    expect(page.locator("h1 [data-field=state]")).to_have_text("Stopped")


def test_a_failed_test_connection_reads_as_a_sentence_with_the_detail_folded(
    browser,
    live_server,
    demo,
    monkeypatch,
):
    from playwright.sync_api import expect

    report = ConnectionReport(
        ok=False,
        tried=[],
        error="Exchange at http://127.0.0.1:8765/EWS/Exchange.asmx has no mailbox alice@contoso.example. "
        "Check the sync user's mailbox address, or deactivate it.",
        code="mailbox_not_found",
        detail="Exchange has no such mailbox (ErrorNonExistentMailbox: …).",
    )
    monkeypatch.setattr(runtime, "test_connection", lambda env_id: report)
    _env, page = open_environment(browser, live_server, demo)
    page.click('[data-tab="settings"]')
    page.click('[data-action="test-connection"]')
    out = page.locator('[data-field="connection-report"]')
    expect(out.locator('[data-field="connection-sentence"]')).to_have_text(
        "Connection failed: " + report.error
    )
    expect(out).not_to_contain_text("Tried")
    detail = out.locator("details.detail pre")
    expect(detail).to_be_hidden()
    out.locator("details.detail summary").click()
    expect(detail).to_have_text(report.detail)


def test_the_settings_show_only_the_chosen_backends_fields(browser, live_server, demo):
    from playwright.sync_api import expect

    _env, page = open_environment(browser, live_server, demo)
    page.click('[data-tab="settings"]')
    expect(page.locator("#id_ews_url")).to_be_visible()
    expect(page.locator("#id_graph_endpoint")).to_be_hidden()
    page.select_option("#id_backend", "graph")
    expect(page.locator("#id_graph_endpoint")).to_be_visible()
    expect(page.locator("#id_oauth_client_id")).to_be_visible()
    expect(page.locator("#id_ews_url")).to_be_hidden()
    expect(page.locator("#id_service_account")).to_be_hidden()
    page.select_option("#id_backend", "ews")
    page.select_option("#id_auth_type", "oauth2")
    expect(page.locator("#id_oauth_client_id")).to_be_visible()
    expect(page.locator("#id_service_account")).to_be_hidden()


def test_new_contact_rows_offer_one_direction_and_activity_rows_every_direction(browser, live_server, demo):
    _env, page = open_environment(browser, live_server, demo)
    page.click('[data-tab="mapping"]')
    page.click("text=Add a mapping row")
    editor = page.locator("[data-mapping-editor]")
    directions = editor.locator("select[name$=direction] option")
    assert directions.evaluate_all("options => options.map(o => o.value)") == ["crm_to_exchange"]
    editor.locator("select[name$=entity]").select_option("activity")
    assert directions.evaluate_all("options => options.map(o => o.value)") == ["crm_to_exchange", "both", "exchange_to_crm"]


def test_checkboxes_sit_beside_their_labels_on_the_user_form(browser, live_server, demo):
    env, page = open_environment(browser, live_server, demo)
    user = SyncUser.objects.filter(environment=env).first()
    page.goto(f"{live_server.url}/environments/{env.pk}/users/{user.pk}/edit/")
    box = page.locator("#id_contacts_enabled").bounding_box()
    label = page.locator('label.check[for="id_contacts_enabled"] span').bounding_box()
    # Side by side: on one line, the label to the right of its box.
    assert label["x"] > box["x"] + box["width"] - 1
    assert abs((label["y"] + label["height"] / 2) - (box["y"] + box["height"] / 2)) < box["height"]


def test_a_held_user_is_in_needs_attention_and_confirm_deletions_works_from_there(
    browser,
    live_server,
    demo,
):
    from playwright.sync_api import expect

    env, _, _ = demo
    held = {
        "state": "held",
        "since": "2026-12-01T09:00:00+00:00",
        "reason": "The safety limit held back deletions.",
    }
    SyncUser.objects.filter(environment=env, mailbox_email="alice@contoso.example").update(
        health="held",
        kind_health={"contacts": held, "calendar": {"state": "healthy", "since": held["since"]}},
    )
    env, page = open_environment(browser, live_server, demo)
    expect(page.locator('[data-tab="attention"] .count')).to_have_text("1")
    page.click('[data-tab="attention"]')
    row = page.locator('tr[data-attention-user="alice@contoso.example"][data-kind="contacts"]')
    expect(row).to_contain_text("Held by the safety limit")
    expect(row).to_contain_text("The safety limit held back deletions.")
    row.locator('[data-action="confirm-deletions"]').click()
    expect(page.locator(".message.success")).to_contain_text("allowed to delete beyond the safety limit")
    expect(page.locator("#attention")).to_be_visible()  # back on the Attention tab
    expect(page.locator('tr[data-attention-user="alice@contoso.example"]')).to_have_count(0)
    alice = SyncUser.objects.get(environment=env, mailbox_email="alice@contoso.example")
    assert alice.deletions_confirmed and alice.health == "healthy"


def test_the_degraded_badge_follows_the_users_health(browser, live_server, demo):
    from playwright.sync_api import expect

    env, _, _ = demo
    healthy = {"state": "healthy", "since": "2026-12-01T09:00:00+00:00"}
    SyncUser.objects.filter(environment=env).update(kind_health={"contacts": healthy, "calendar": healthy})
    env.set_state("running")
    env, page = open_environment(browser, live_server, demo)
    degraded = page.locator('h1 [data-field="degraded"]')
    expect(page.locator("h1 [data-field=state]")).to_have_text("Running")
    expect(degraded).to_be_hidden()
    failing = {
        "state": "failing",
        "since": healthy["since"],
        "reason": "Exchange has no mailbox bob@contoso.example.",
    }
    SyncUser.objects.filter(environment=env, mailbox_email="bob@contoso.example").update(
        health="unhealthy", kind_health={"contacts": failing, "calendar": healthy}
    )
    expect(degraded).to_be_visible(timeout=15_000)
    expect(degraded).to_have_text("Degraded")
    bob = page.locator('tr[data-user="bob@contoso.example"]')
    expect(bob.locator('[data-field="health"]')).to_have_text("Failing")
    expect(bob.locator('[data-field="reason"]')).to_have_text("Exchange has no mailbox bob@contoso.example.")
    env.set_state("stopped")
    expect(degraded).to_be_hidden(timeout=15_000)
    expect(page.locator('[data-action="sync-now-all"]')).to_be_disabled()


def test_test_and_enable_of_a_missing_mailbox_shows_a_readable_reason(
    browser, live_server, demo, monkeypatch
):
    from playwright.sync_api import expect

    sentence = (
        "Exchange at http://127.0.0.1:8765/EWS/Exchange.asmx has no mailbox frank@contoso.example. "
        "Check the sync user's mailbox address, or deactivate it."
    )
    monkeypatch.setattr(
        runtime,
        "check_mailbox",
        lambda user: ConnectionReport(
            ok=False, error=sentence, code="mailbox_not_found", detail="ErrorNonExistentMailbox: …"
        ),
    )
    env, page = open_environment(browser, live_server, demo)
    page.click("#users details > summary")
    page.select_option("#id_employee", label="Frank Fischer <frank@contoso.example>")
    page.fill("#id_mailbox_email", "frank@contoso.example")
    page.click("#users form button.primary")
    expect(page.locator(".message.success")).to_contain_text("Its mailbox is being tested")
    row = page.locator('tr[data-user="frank@contoso.example"]')
    expect(row.locator('[data-field="health"]')).to_have_text("Never tested")
    # The worker runs the test it was given (here, in the test's thread).
    frank = SyncUser.objects.get(environment=env, mailbox_email="frank@contoso.example")
    runtime.test_mailbox(frank.pk)
    expect(row.locator('[data-field="health"]')).to_have_text("Failing", timeout=15_000)
    expect(row.locator('[data-field="reason"]')).to_have_text(sentence)


def test_o1_the_overview_shows_degraded_and_o5_ticked_users_are_re_enabled_together(browser, live_server, demo):
    from playwright.sync_api import expect

    env, username, password = demo
    SyncUser.objects.filter(environment=env, mailbox_email__in=["alice@contoso.example", "bob@contoso.example"]).update(
        health="unhealthy", last_error="Exchange has no such mailbox."
    )
    env.set_state("running")  # no worker here: the page only reads the state
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, live_server.url, username, password)
    page.goto(f"{live_server.url}/")
    expect(page.locator(f'tr[data-env="{env.pk}"] [data-field="degraded"]')).to_have_text("Degraded")

    page.goto(f"{live_server.url}/environments/{env.pk}/")
    for email in ("alice@contoso.example", "bob@contoso.example"):
        page.check(f'tr[data-user="{email}"] [data-select-user]')
    page.click('[data-action="re-enable-selected"]')
    expect(page.locator("body")).to_contain_text("Re-enabled: alice@contoso.example, bob@contoso.example.")
    assert set(SyncUser.objects.filter(environment=env).values_list("health", flat=True)) == {"healthy"}
