"""P1 before a save: a filter, mapping or settings change is previewed — what every active user's
next pass would do under the proposed configuration — and nothing is written anywhere (no
configuration, mailbox, link, token or health change); saving it and running the passes then does
what the preview said. The console offers it as "Preview change" beside "Save"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from syncadmin.models import AuditEntry
from syncadmin.roles import ADMINISTRATOR, OPERATOR
from synccore.models import FieldMapping, SyncSettings
from synccore.runtime import service as runtime
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.service import run_passes
from tests.fixtures import factories as f
from tests.fixtures.api import console_settings_data, user_with_role
from tests.test_sync_preview import database, mailboxes, meeting, writes

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph")]


@pytest.fixture
def start():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)


def reps(crm):
    """Three contacts with a rep (two of alice's, one of bob's) and one without, in both mailboxes."""
    alice, bob = crm.alice.employee, crm.bob.employee
    for name, rep in (("Ann Alice", alice), ("Al Alice", alice), ("Bea Bob", bob), ("Nora None", None)):
        first, last = name.split()
        f.contact(crm.env, first_name=first, last_name=last, rep=rep)
    crm.contacts_pass(crm.alice)
    crm.contacts_pass(crm.bob)


def names(crm, user) -> list[str]:
    return sorted(c.props["DisplayName"] for c in crm.mailbox(user).contacts())


def previewed_change(crm, proposed) -> dict:
    """A preview of a change, checked to have changed nothing anywhere."""
    db_before, mail_before = database(), mailboxes(crm.sim)
    crm.sim.counters.reset()
    result = runtime.preview_change(crm.env.pk, proposed)
    assert writes(crm.sim) == 0
    assert crm.sim.counters.total() > 0  # it read both sides of every mailbox
    assert mailboxes(crm.sim) == mail_before
    assert database() == db_before  # the proposed configuration too is gone
    return result


def by_rep() -> None:
    SyncSettings.objects.update(filter_by_rep=True)


class TestService:
    def test_p1_a_filter_change_previewed_shows_the_contacts_removed_and_the_meeting_cancelled(self, crm, start):
        reps(crm)
        dropped = meeting(crm, start, subject="Dropped")
        run_calendar_pass(crm.alice.pk)
        dropped.delete()  # waiting anyway: the next pass cancels it, with or without the change
        result = previewed_change(crm, by_rep)
        summary = result["summary"]
        # alice loses Bea Bob and Nora None, bob loses Ann, Al and Nora: 5 cards from 2 mailboxes.
        removed = sorted((a["user"], a["item"]["subject"]) for a in result["actions"] if a["action"] == "delete")
        assert removed == [
            ("alice@contoso.example", "Bea Bob"),
            ("alice@contoso.example", "Nora None"),
            ("bob@contoso.example", "Al Alice"),
            ("bob@contoso.example", "Ann Alice"),
            ("bob@contoso.example", "Nora None"),
        ]
        assert [a["item"]["subject"] for a in result["actions"] if a["action"] == "cancel"] == ["Dropped"]
        assert (summary["would_create"], summary["would_update"], summary["would_delete"]) == (0, 0, 6)
        assert summary["cancellations"] == 2
        assert result["mailboxes"] == 2
        assert result["words"] == (
            "would remove 5 contacts from 2 mailboxes, cancel 1 meeting in 1 mailbox and send 2 cancellations"
        )
        # Saved and run: exactly what the preview said.
        by_rep()
        summary_run = run_passes(crm.env.name)
        assert summary_run.totals["deleted"] == summary["would_delete"]
        assert (summary_run.totals["created"], summary_run.totals["updated"]) == (0, 0)
        assert names(crm, crm.alice) == ["Al Alice", "Ann Alice"]
        assert names(crm, crm.bob) == ["Bea Bob"]
        assert "Dropped" not in [e.props["Subject"] for e in crm.mailbox().events()]

    def test_p1_a_kind_switched_on_by_the_change_is_previewed_and_one_switched_off_is_not(self, crm, start):
        crm.configure(synchronize_contacts=False)
        f.contact(crm.env, first_name="Ann", last_name="Lee")
        f.activity(crm.env, subject="Dentist", start=start, organizer=crm.alice.employee)

        def contacts_on_calendar_off() -> None:
            SyncSettings.objects.update(synchronize_contacts=True, synchronize_activities=False)

        result = previewed_change(crm, contacts_on_calendar_off)
        assert sorted({(a["pass"], a["action"]) for a in result["actions"]}) == [("contacts", "create")]
        assert result["words"] == "would add 2 contacts to 2 mailboxes"
        assert SyncSettings.objects.get(environment=crm.env).synchronize_contacts is False

    def test_p1_a_mapping_change_previewed_updates_every_card(self, crm):
        f.contact(crm.env, first_name="Ann", last_name="Lee", job_title="Buyer")
        crm.contacts_pass(crm.alice)
        crm.contacts_pass(crm.bob)
        row = FieldMapping.objects.get(environment=crm.env, entity="contact", crm_field="job_title")

        def job_title_off() -> None:
            FieldMapping.objects.filter(pk=row.pk).update(enabled=False)

        result = previewed_change(crm, job_title_off)
        assert result["words"] == "would update 2 contacts in 2 mailboxes"
        assert FieldMapping.objects.get(pk=row.pk).enabled


class TestConsole:
    def test_p1_preview_change_beside_save_filters_shows_the_words_and_saves_nothing(self, crm, client):
        reps(crm)
        client.force_login(user_with_role(ADMINISTRATOR))
        page = client.get(f"/environments/{crm.env.pk}/?tab=filters").content.decode()
        assert page.count('data-action="preview-change"') >= 3  # filters, settings, mapping
        db_before, mail_before = database(), mailboxes(crm.sim)
        response = client.post(
            f"/environments/{crm.env.pk}/settings/preview/", {"section": "filters", "filter_by_rep": "on"}
        )
        assert response.status_code == 200
        page = response.content.decode()
        assert "Saving these filters would remove 5 contacts from 2 mailboxes (2 mailboxes affected)." in page
        assert '<td data-field="would_delete">5</td>' in page
        assert "would delete “Nora None”" in page
        assert (database(), mailboxes(crm.sim)) == (db_before, mail_before)
        assert not AuditEntry.objects.exists()
        # "Save this change" posts exactly the previewed fields to the filters' own save.
        assert f'action="/environments/{crm.env.pk}/settings/"' in page
        assert '<input type="hidden" name="section" value="filters">' in page
        assert '<input type="hidden" name="filter_by_rep" value="on">' in page
        assert 'name="filter_by_favorites"' not in page
        saved = client.post(f"/environments/{crm.env.pk}/settings/", {"section": "filters", "filter_by_rep": "on"})
        assert saved.status_code == 302
        assert SyncSettings.objects.get(environment=crm.env).filter_by_rep is True

    def test_p1_preview_change_of_the_settings_and_of_a_mapping_row(self, crm, client, start):
        f.activity(crm.env, subject="Dentist", start=start, organizer=crm.alice.employee)
        crm.configure(synchronize_activities=False)
        client.force_login(user_with_role(ADMINISTRATOR))
        data = console_settings_data(crm.env, synchronize_activities="on")
        response = client.post(f"/environments/{crm.env.pk}/settings/preview/", data)
        page = response.content.decode()
        assert "Saving these settings would add 1 event to 1 mailbox" in page
        assert SyncSettings.objects.get(environment=crm.env).synchronize_activities is False
        # A typed secret is not carried through a preview (it would travel back in the page).
        response = client.post(f"/environments/{crm.env.pk}/settings/preview/", {**data, "service_password": "x"})
        assert "A preview does not carry passwords or secrets" in response.content.decode()
        assert 'value="x"' not in response.content.decode()
        row = FieldMapping.objects.get(environment=crm.env, entity="contact", crm_field="job_title")
        form = {f"m{row.pk}-{k}": v for k, v in (("entity", "contact"), ("crm_field", "job_title"))}
        form |= {f"m{row.pk}-exchange_field": row.exchange_field, f"m{row.pk}-direction": row.direction}
        response = client.post(f"/environments/{crm.env.pk}/mappings/{row.pk}/preview/", form)
        page = response.content.decode()
        assert response.status_code == 200
        assert f'action="/environments/{crm.env.pk}/mappings/{row.pk}/"' in page
        assert FieldMapping.objects.get(pk=row.pk).enabled

    def test_p1_only_an_administrator_previews_a_change(self, crm, client):
        client.force_login(user_with_role(OPERATOR))
        url = f"/environments/{crm.env.pk}/settings/preview/"
        assert client.post(url, {"section": "filters", "filter_by_rep": "on"}).status_code in (302, 403)
        assert 'data-action="preview-change"' not in client.get(f"/environments/{crm.env.pk}/").content.decode()
