"""P1 in Debian's Chromium (Playwright): an administrator changes a filter, presses "Preview
change", reads what it would do ("would remove 3 contacts from 2 mailboxes"), confirms, and after
the pass the contacts are gone from the mailboxes. The console runs against a live server and the
preview reads the simulator's mailboxes for real; the pass after the save is run here, as a
worker would run it.

The Chromium fixture is test_browser_console's (CI=true: a missing Chromium fails, never skips).
"""

# ruff: noqa: F811  (the fixtures imported from test_browser_console are parameters here)

from __future__ import annotations

import pytest

from syncadmin.roles import ADMINISTRATOR
from synccore.models import SyncSettings
from synccore.sync.service import run_passes
from tests.fixtures import factories as f
from tests.fixtures.api import user_with_role
from tests.test_browser_console import browser, log_in  # noqa: F401  (fixtures)
from tests.test_sync_preview import mailboxes, writes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def names(crm, user) -> list[str]:
    return sorted(c.props["DisplayName"] for c in crm.mailbox(user).contacts())


def test_p1_a_filter_change_previewed_in_the_console_shows_the_numbers_then_is_saved_and_done(
    browser, live_server, crm
):
    from playwright.sync_api import expect

    alice, bob = crm.alice.employee, crm.bob.employee
    for first, last, rep in (("Ann", "Alice", alice), ("Al", "Alice", alice), ("Bea", "Bob", bob)):
        f.contact(crm.env, first_name=first, last_name=last, rep=rep)
    run_passes(crm.env.name, kind="contacts")
    assert names(crm, crm.alice) == names(crm, crm.bob) == ["Al Alice", "Ann Alice", "Bea Bob"]

    admin = user_with_role(ADMINISTRATOR)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    log_in(page, live_server.url, admin.username, "pw-Secret-123")
    page.goto(f"{live_server.url}/environments/{crm.env.pk}/?tab=filters")
    page.check("#id_filter_by_rep")
    mail_before = mailboxes(crm.sim)
    crm.sim.counters.reset()
    page.click('#filters [data-action="preview-change"]')

    # alice would lose Bea Bob, bob Ann and Al: the numbers, in words and in the table.
    words = page.locator('[data-field="preview-words"]')
    expect(words).to_contain_text("Saving these filters would remove 3 contacts from 2 mailboxes")
    expect(page.locator('[data-field="would_delete"]')).to_have_text("3")
    expect(page.locator('[data-field="mailboxes"]')).to_have_text("2")
    expect(page.locator('.preview-actions li[data-action-kind="delete"]')).to_have_count(3)
    # Nothing saved, nothing written.
    assert SyncSettings.objects.get(environment=crm.env).filter_by_rep is False
    assert writes(crm.sim) == 0
    assert mailboxes(crm.sim) == mail_before

    page.click('[data-action="save-change"]')
    expect(page.locator("ul.messages")).to_contain_text("Filters saved.")
    assert SyncSettings.objects.get(environment=crm.env).filter_by_rep is True

    summary = run_passes(crm.env.name, kind="contacts")
    assert summary.totals["deleted"] == 3
    assert names(crm, crm.alice) == ["Al Alice", "Ann Alice"]
    assert names(crm, crm.bob) == ["Bea Bob"]
