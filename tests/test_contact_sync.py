"""Contact synchronization CRM → Exchange (rules C1–C9, DESIGN §5), against exchange_sim with
real exchangelib over loopback HTTP."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from synccore.models import Contact, FieldMapping, Health, ItemLink, LinkState, Outcome, SalesGroup
from synccore.sync import contacts as contact_sync
from synccore.sync.contacts import (
    ContactSyncDisabled,
    allow_deletions_beyond_limit,
    remove_synchronized_items,
)
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph")]


def names(items) -> set[str]:
    return {item.props.get("DisplayName") for item in items}


def make_contacts(crm, count: int, **fields) -> list[Contact]:
    return [f.contact(crm.env, first_name="Ann", last_name=f"Lee {i:04d}", **fields) for i in range(count)]


class TestSelection:
    def test_c1_no_contact_pass_while_contact_sync_is_off(self, crm):
        crm.configure(synchronize_contacts=False)
        with pytest.raises(ContactSyncDisabled, match="off"):
            crm.contacts_pass()

    def test_c2_the_first_pass_writes_every_synchronized_contact(self, crm):
        make_contacts(crm, 3)
        f.contact(crm.env, last_name="Hidden", synchronize=False)
        run = crm.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.created == 3
        assert names(crm.mailbox().contacts()) == {"Ann Lee 0000", "Ann Lee 0001", "Ann Lee 0002"}

    def test_c2_a_changed_contact_is_written_on_the_next_pass_with_only_its_changed_fields(self, crm):
        (contact,) = make_contacts(crm, 1, job_title="Buyer")
        crm.contacts_pass()
        contact.job_title = "CFO"
        contact.save()
        crm.sim.request_log.enabled = True
        run = crm.contacts_pass()
        assert (run.created, run.updated) == (0, 1)
        (item,) = crm.mailbox().contacts()
        assert item.props["JobTitle"] == "CFO"
        if crm.is_graph:  # a PATCH inside a $batch
            update = next(e for e in crm.sim.request_log.entries() if '"PATCH"' in e.request)
            assert '"jobTitle"' in update.request and '"givenName"' not in update.request
        else:
            update = next(e for e in crm.sim.request_log.entries() if e.operation == "UpdateItem")
            assert "JobTitle" in update.request and "GivenName" not in update.request

    def test_c3_with_no_filter_every_synchronized_contact_qualifies(self, crm):
        make_contacts(crm, 2, rep=f.employee(crm.env))
        assert crm.contacts_pass().created == 2

    def test_c3_enabled_filters_select_the_union_of_rep_sales_group_and_favorites(self, crm):
        crm.configure(filter_by_rep=True, filter_by_sales_group=True, filter_by_favorites=True)
        alice = crm.alice.employee
        group = SalesGroup.objects.create(environment=crm.env, name="Benelux")
        group.members.add(alice)
        f.contact(crm.env, last_name="Represented", rep=alice)
        f.contact(crm.env, last_name="Grouped").sales_groups.add(group)
        f.contact(crm.env, last_name="Favorite").favorite_of.add(alice)
        f.contact(crm.env, last_name="Everything", rep=alice).favorite_of.add(alice)
        f.contact(crm.env, last_name="Somebody else's", rep=crm.bob.employee)
        crm.contacts_pass()
        surnames = {item.props["Surname"] for item in crm.mailbox().contacts()}
        assert surnames == {"Represented", "Grouped", "Favorite", "Everything"}

    def test_c4_synchronize_companies_writes_companies_as_contact_cards(self, crm):
        company = f.company(crm.env, name="Fabrikam", division="Sales", phone="+31 20 1234567")
        f.contact(crm.env, last_name="Jansen", company=company)
        crm.configure(synchronize_companies=True)
        crm.contacts_pass()
        cards = {item.props["DisplayName"]: item for item in crm.mailbox().contacts()}
        assert cards["Fabrikam - Sales"].props["CompanyName"] == "Fabrikam - Sales"
        assert cards["Fabrikam - Sales"].props["PhoneNumbers"]["BusinessPhone"] == "+31 20 1234567"
        assert cards["Anna Jansen"].props["CompanyName"] == "Fabrikam - Sales"

    def test_c9_a_sales_group_membership_change_is_picked_up_without_touching_the_contact(self, crm):
        crm.configure(filter_by_sales_group=True)
        group = SalesGroup.objects.create(environment=crm.env, name="DACH")
        f.contact(crm.env, last_name="Müller").sales_groups.add(group)
        crm.contacts_pass()
        assert crm.mailbox().contacts() == []
        group.members.add(crm.alice.employee)  # the contact row is not touched
        crm.contacts_pass()
        assert names(crm.mailbox().contacts()) == {"Anna Müller"}


class TestFolders:
    def test_c5_categorization_writes_new_contacts_into_the_folder_creating_it(self, crm):
        crm.configure(categorize_contacts=True, contact_folder_name="CRM")
        make_contacts(crm, 2)
        crm.contacts_pass()
        assert len(crm.mailbox().contacts("contacts/CRM")) == 2
        assert crm.mailbox().contacts() == []

    def test_c5_turning_categorization_on_moves_existing_contacts_into_the_folder(self, crm):
        make_contacts(crm, 2)
        crm.contacts_pass()
        crm.configure(categorize_contacts=True, contact_folder_name="CRM")
        run = crm.contacts_pass()
        assert run.updated == 2
        assert len(crm.mailbox().contacts("contacts/CRM")) == 2 and crm.mailbox().contacts() == []

    def test_c5_turning_categorization_off_leaves_existing_contacts_where_they_are(self, crm):
        crm.configure(categorize_contacts=True, contact_folder_name="CRM")
        make_contacts(crm, 1)
        crm.contacts_pass()
        crm.configure(categorize_contacts=False)
        f.contact(crm.env, last_name="Newcomer")
        crm.contacts_pass()
        assert names(crm.mailbox().contacts("contacts/CRM")) == {"Ann Lee 0000"}
        assert names(crm.mailbox().contacts()) == {"Anna Newcomer"}

    def test_c5_a_per_user_folder_overrides_the_environments(self, crm):
        crm.configure(categorize_contacts=True, contact_folder_name="CRM")
        crm.alice.contact_folder_override = "Customers"
        crm.alice.save()
        make_contacts(crm, 1)
        crm.contacts_pass()
        assert len(crm.mailbox().contacts("contacts/Customers")) == 1

    def test_finding6_c5_a_per_user_switch_turns_categorization_on_for_that_user_only(self, crm):
        crm.configure(categorize_contacts=False, contact_folder_name="CRM")
        crm.alice.categorize_override = True
        crm.alice.save()
        make_contacts(crm, 1)
        crm.contacts_pass(crm.alice)
        crm.contacts_pass(crm.bob)
        assert len(crm.mailbox(crm.alice).contacts("contacts/CRM")) == 1
        assert crm.mailbox(crm.alice).contacts() == []
        assert len(crm.mailbox(crm.bob).contacts()) == 1

    def test_finding6_c5_a_per_user_switch_turns_categorization_off_for_that_user_only(self, crm):
        crm.configure(categorize_contacts=True, contact_folder_name="CRM")
        crm.alice.categorize_override = False
        crm.alice.save()
        make_contacts(crm, 1)
        crm.contacts_pass(crm.alice)
        crm.contacts_pass(crm.bob)
        assert len(crm.mailbox(crm.alice).contacts()) == 1
        assert len(crm.mailbox(crm.bob).contacts("contacts/CRM")) == 1
        crm.alice.categorize_override = None  # back to the environment's: existing contacts move (C5)
        crm.alice.save()
        crm.contacts_pass(crm.alice)
        assert len(crm.mailbox(crm.alice).contacts("contacts/CRM")) == 1

    def test_a_pass_in_a_fresh_process_does_not_look_the_folder_up_again(self, crm):
        crm.configure(categorize_contacts=True, contact_folder_name="CRM")
        make_contacts(crm, 1)
        crm.contacts_pass()
        crm.sim.counters.reset()
        crm.contacts_pass()
        assert crm.sim.counters.snapshot() == {crm.op("contact_changes"): 1}


class TestExchangeIsNeverASource:
    def test_c6_contacts_made_in_outlook_are_not_copied_to_the_crm(self, crm):
        crm.mailbox().create_contact(GivenName="Private", Surname="Friend")
        before = Contact.objects.count()
        crm.contacts_pass()
        assert Contact.objects.count() == before
        assert "Private Friend" not in {c.full_name for c in Contact.objects.all()}

    def test_c6_an_outlook_edit_of_a_synced_contact_is_overwritten_on_the_next_pass(self, crm):
        make_contacts(crm, 1, job_title="Buyer")
        crm.contacts_pass()
        (item,) = crm.mailbox().contacts()
        crm.mailbox().edit(item, JobTitle="Changed in Outlook")
        run = crm.contacts_pass()
        assert run.updated == 1
        assert crm.mailbox().get(item.id).props["JobTitle"] == "Buyer"

    def test_an_outlook_edit_made_during_a_pass_is_overwritten_on_the_following_pass(self, crm, monkeypatch):
        make_contacts(crm, 2, job_title="Buyer")
        crm.contacts_pass()
        _, second = crm.mailbox().contacts()
        original = contact_sync.ContactPass.absorb_after_writes

        def edit_then_absorb(self, state):
            crm.mailbox().edit(second, JobTitle="Sneaky edit")
            return original(self, state)

        Contact.objects.filter(pk=Contact.objects.first().pk).update(job_title="CEO")
        monkeypatch.setattr(contact_sync.ContactPass, "absorb_after_writes", edit_then_absorb)
        crm.contacts_pass()
        monkeypatch.undo()
        crm.contacts_pass()
        assert {i.props["JobTitle"] for i in crm.mailbox().contacts()} <= {"Buyer", "CEO"}

    def test_an_outlook_deletion_of_a_synced_contact_re_creates_it(self, crm):
        make_contacts(crm, 1)
        crm.contacts_pass()
        (item,) = crm.mailbox().contacts()
        crm.mailbox().delete(item, hard=True)
        assert crm.contacts_pass().created == 1
        assert len(crm.mailbox().contacts()) == 1


class TestRemoval:
    def test_c7_a_contact_whose_flag_is_cleared_is_removed_from_the_mailbox(self, crm):
        contact, _ = make_contacts(crm, 2)
        crm.contacts_pass()
        contact.synchronize = False
        contact.save()
        assert crm.contacts_pass().deleted == 1
        assert names(crm.mailbox().contacts()) == {"Ann Lee 0001"}

    def test_c7_a_contact_deleted_in_the_crm_is_removed_then_its_tombstone_purged(self, crm):
        contact, _ = make_contacts(crm, 2)
        crm.contacts_pass()
        contact.delete()
        assert Contact.all_objects.get(pk=contact.pk).is_tombstone
        assert crm.contacts_pass().deleted == 1
        assert not Contact.all_objects.filter(pk=contact.pk).exists()

    def test_c7_a_tombstone_waits_until_every_mailbox_is_cleaned(self, crm):
        contact, _ = make_contacts(crm, 2)
        crm.contacts_pass(crm.alice)
        crm.contacts_pass(crm.bob)
        contact.delete()
        crm.contacts_pass(crm.alice)
        assert Contact.all_objects.get(pk=contact.pk).is_tombstone
        crm.contacts_pass(crm.bob)
        assert not Contact.all_objects.filter(pk=contact.pk).exists()

    def test_c7_a_contact_that_no_longer_matches_the_filter_is_removed(self, crm):
        f.contact(crm.env, last_name="Mine", rep=crm.alice.employee)
        theirs = f.contact(crm.env, last_name="Theirs", rep=crm.alice.employee)
        crm.configure(filter_by_rep=True)
        crm.contacts_pass()
        theirs.rep = crm.bob.employee
        theirs.save()
        crm.contacts_pass()
        assert {i.props["Surname"] for i in crm.mailbox().contacts()} == {"Mine"}

    def test_c7_deactivating_a_user_stops_its_sync_and_leaves_the_mailbox_as_it_is(self, crm):
        make_contacts(crm, 2)
        crm.contacts_pass()
        crm.alice.active = False
        crm.alice.save()
        with pytest.raises(ContactSyncDisabled):
            crm.contacts_pass()
        assert len(crm.mailbox().contacts()) == 2

    def test_c7_remove_synchronized_items_cleans_the_mailbox_only_when_confirmed(self, crm):
        make_contacts(crm, 3)
        crm.mailbox().create_contact(GivenName="Own", Surname="Contact")
        crm.contacts_pass()
        with pytest.raises(ValueError, match="confirmed"):
            remove_synchronized_items(crm.alice.pk, confirm=False)
        assert remove_synchronized_items(crm.alice.pk, confirm=True) == 3
        assert names(crm.mailbox().contacts()) == {"Own Contact"}
        assert not ItemLink.objects.filter(sync_user=crm.alice).exists()


class TestMapping:
    def test_c8_the_field_mapping_decides_which_fields_are_written(self, crm):
        FieldMapping.objects.filter(environment=crm.env, crm_field="job_title").update(enabled=False)
        FieldMapping.objects.create(
            environment=crm.env, entity="contact", crm_field="department", exchange_field="department"
        )
        make_contacts(crm, 1, job_title="CFO", department="Finance")
        crm.contacts_pass()
        (item,) = crm.mailbox().contacts()
        assert "JobTitle" not in item.props
        assert item.props["Department"] == "Finance"

    def test_c8_changing_a_mapping_re_writes_the_affected_items(self, crm):
        make_contacts(crm, 2, job_title="CFO")
        crm.contacts_pass()
        FieldMapping.objects.filter(environment=crm.env, crm_field="job_title").update(enabled=False)
        run = crm.contacts_pass()
        assert run.updated == 2
        assert all("JobTitle" not in item.props for item in crm.mailbox().contacts())

    def test_finding2_a_disabled_contact_row_is_neither_written_nor_compared(self, crm):
        (contact,) = make_contacts(crm, 1, job_title="CFO")
        crm.contacts_pass()
        FieldMapping.objects.filter(environment=crm.env, crm_field="job_title").update(enabled=False)
        crm.contacts_pass()  # what the product wrote there is cleared once (C8)
        (item,) = crm.mailbox().contacts()
        crm.mailbox().edit(item, JobTitle="Chief of everything", Department="Edited")
        contact.job_title = "CEO"
        contact.save()
        run = crm.contacts_pass()
        (item,) = crm.mailbox().contacts()
        # The Outlook edit of the unmapped field stays; the CRM's change of it is not written.
        assert item.props["JobTitle"] == "Chief of everything"
        assert run.updated == 1  # the Outlook edit still overwrites what is mapped (C6)
        assert crm.contacts_pass().updated == 0
        FieldMapping.objects.filter(environment=crm.env, crm_field="job_title").update(enabled=True)
        assert crm.contacts_pass().updated == 1
        (item,) = crm.mailbox().contacts()
        assert item.props["JobTitle"] == "CEO"

    def test_c8_a_mapped_fax_is_outlooks_business_fax(self, crm):
        # Graph v1.0 has no fax field: the backend writes PidTagBusinessFaxNumber (0x3A24), the
        # property behind EWS's BusinessFax.
        FieldMapping.objects.create(
            environment=crm.env, entity="contact", crm_field="fax", exchange_field="business_fax"
        )
        f.contact(crm.env, last_name="Fax", fax="+31 20 999")
        crm.contacts_pass()
        (item,) = crm.mailbox().contacts()
        assert item.props["PhoneNumbers"]["BusinessFax"] == "+31 20 999"

    def test_the_business_address_carries_the_country_iso_code(self, crm):
        f.contact(
            crm.env,
            street="Damrak 1",
            city="Amsterdam",
            postal_code="1012 LG",
            country=f.country(crm.env, "NL"),
        )
        crm.contacts_pass()
        (item,) = crm.mailbox().contacts()
        assert item.props["PhysicalAddresses"]["Business"] == {
            "Street": "Damrak 1",
            "City": "Amsterdam",
            "PostalCode": "1012 LG",
            "CountryOrRegion": "NL",
        }

    def test_display_name_and_file_as_are_built_like_outlook(self, crm):
        f.contact(crm.env, first_name="Jan", middle_name="van", last_name="Dijk")
        crm.contacts_pass()
        (item,) = crm.mailbox().contacts()
        assert (item.props["DisplayName"], item.props["FileAs"]) == ("Jan van Dijk", "Dijk, Jan van")

    def test_the_sync_id_is_written_as_an_extended_property_of_our_own(self, crm):
        make_contacts(crm, 1)
        crm.contacts_pass()
        link = ItemLink.objects.get(sync_user=crm.alice)
        (item,) = crm.mailbox().find_by_extended("CrmSyncId", str(link.sync_id))
        assert crm.remote_id(item) == link.remote_id


class TestReliability:
    def test_a_crash_between_the_remote_create_and_the_commit_leaves_no_duplicate(self, crm, monkeypatch):
        make_contacts(crm, 5)

        def crash(*args, **kwargs):
            raise RuntimeError("worker killed")

        monkeypatch.setattr(contact_sync.ContactPass, "_apply", crash)
        assert crm.contacts_pass().outcome == Outcome.FAILED
        assert len(crm.mailbox().contacts()) == 5  # the creates reached Exchange
        assert set(ItemLink.objects.values_list("state", flat=True)) == {LinkState.PENDING}
        monkeypatch.undo()
        run = crm.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.created == 5
        assert len(crm.mailbox().contacts()) == 5
        assert crm.contacts_pass().created == 0

    def test_server_busy_with_a_back_off_makes_the_pass_wait_and_complete(self, crm):
        make_contacts(crm, 3)
        # Graph answers 429 with Retry-After; each throttled create of the $batch is sent again alone.
        crm.sim.faults.server_busy(times=2, back_off_ms=50, operation=crm.op("create"))
        run = crm.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.created == 3
        if crm.is_graph:
            assert crm.sim.counters.sub_requests(crm.op("create")) == 3 + 2
        else:
            assert crm.sim.counters["CreateItem"] == 3

    def test_a_401_marks_the_user_unhealthy_with_a_readable_reason_and_others_still_sync(self, crm):
        from synccore.sync.service import run_passes

        make_contacts(crm, 2)
        crm.sim.faults.unauthorized(times=3)  # alice's pass meets three; bob's none
        summary = run_passes(crm.env.name, kind="contacts")
        crm.alice.refresh_from_db()
        assert crm.alice.health == Health.UNHEALTHY
        assert "credentials" in crm.alice.last_error
        assert summary.users == 2 and (summary.failed_passes, summary.aborted) == (1, 0)
        assert len(crm.mailbox(crm.bob).contacts()) == 2

    def test_a_mass_deletion_above_the_safety_limit_is_held_until_confirmed(self, crm):
        crm.configure(safety_limit_percent=20, safety_limit_minimum=3)
        contacts = make_contacts(crm, 10)
        crm.contacts_pass()
        Contact.objects.filter(pk__in=[c.pk for c in contacts[:6]]).update(synchronize=False)
        run = crm.contacts_pass()
        assert run.outcome == Outcome.HELD and run.deleted == 0
        assert "safety limit" in run.error
        crm.alice.refresh_from_db()
        assert crm.alice.health == Health.HELD
        assert len(crm.mailbox().contacts()) == 10
        allow_deletions_beyond_limit(crm.alice.pk)
        run = crm.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.deleted == 6
        crm.alice.refresh_from_db()
        assert crm.alice.health == Health.HEALTHY and not crm.alice.deletions_confirmed

    def test_a_small_mailbox_can_still_lose_a_contact(self, crm):
        crm.configure(safety_limit_percent=20, safety_limit_minimum=10)
        contact, *_ = make_contacts(crm, 3)
        crm.contacts_pass()
        contact.delete()
        assert crm.contacts_pass().deleted == 1

    def test_bad_input_items_are_reported_and_skipped_and_the_pass_goes_on(self, crm):
        f.contact(crm.env, last_name="Good")
        bad_mail = f.contact(crm.env, last_name="Mail", email1="not an address")
        # “Name - Division” of a long company name is longer than Exchange's 255 characters.
        long_company = f.company(crm.env, name="N" * 200, division="D" * 80)
        too_long = f.contact(crm.env, last_name="Long", company=long_company)
        nameless = f.contact(crm.env, first_name="Only", last_name="")
        run = crm.contacts_pass()
        assert run.outcome == Outcome.PARTIAL and (run.created, run.skipped) == (1, 3)
        errors = {
            link.contact_id: link.last_error for link in ItemLink.objects.filter(state=LinkState.SKIPPED)
        }
        assert "not a valid e-mail address" in errors[bad_mail.pk]
        assert "longer than Exchange allows" in errors[too_long.pk]
        assert "no last name" in errors[nameless.pk]
        nameless.last_name = "Fixed"
        nameless.save()
        assert crm.contacts_pass().created == 1

    def test_an_invalid_sync_token_leads_to_a_reconcile_not_to_duplicates(self, crm):
        make_contacts(crm, 4)
        crm.contacts_pass()
        (item, *_) = crm.mailbox().contacts()
        crm.mailbox().edit(item, JobTitle="Outlook")
        crm.invalidate_sync_tokens()
        run = crm.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.created == 0
        assert len(crm.mailbox().contacts()) == 4
        assert "JobTitle" not in crm.mailbox().get(item.id).props


class TestCost:
    def test_an_idle_pass_makes_at_most_2_requests(self, crm):
        make_contacts(crm, 20)
        crm.contacts_pass()
        crm.sim.counters.reset()
        run = crm.contacts_pass()
        assert run.requests <= 2 and crm.sim.counters.total() <= 2

    def test_1000_new_contacts_cost_at_most_1000_over_batch_size_plus_5_requests(self, crm):
        crm.configure(batch_size=100)
        Contact.objects.bulk_create(
            Contact(environment=crm.env, first_name="Bulk", last_name=f"Contact {i:04d}") for i in range(1000)
        )
        run = crm.contacts_pass()
        assert run.created == 1000
        # Over Graph a $batch carries at most 20 writes: the budget is 1000 / 20 + 5.
        assert crm.mailbox_requests() <= 1000 / crm.writes_per_request(100) + 5
        assert run.requests == crm.sim.counters.total()  # every request on the wire, tokens too

    def test_a_short_burst_of_401s_is_retried_and_the_pass_completes(self, crm):
        make_contacts(crm, 2)
        crm.sim.faults.unauthorized(times=1)
        assert crm.contacts_pass().outcome == Outcome.SUCCESS

    def test_database_queries_per_pass_do_not_grow_with_the_number_of_contacts(self, crm):
        crm.contacts_pass()  # the first pass also records the folder

        def queries_for_new(count: int) -> int:
            make_contacts(crm, count)
            with CaptureQueriesContext(connection) as ctx:
                crm.contacts_pass()
            return len(ctx.captured_queries)

        # Both sizes fit in one bulk statement (SQLite splits bulk writes at 999 parameters),
        # so any per-contact query would show as a difference of 25.
        assert queries_for_new(5) == queries_for_new(30)


class TestAuthentication:
    @pytest.mark.parametrize("auth", ["ntlm", "basic"])
    def test_a_pass_works_with_each_service_account_auth_type(self, exchange_sim_factory, auth):
        sim = exchange_sim_factory(auth=auth)
        env = f.environment(
            f"Auth {auth}",
            ews_url=sim.url,
            auth_type=auth,
            service_account=sim.credentials[0],
            service_password=sim.credentials[1],
            synchronize_contacts=True,
        )
        user = f.sync_user(env, "carol@contoso.example")
        f.contact(env, last_name="Secure")
        run = contact_sync.run_contact_pass(user.pk)
        assert run.outcome == Outcome.SUCCESS and run.created == 1

    @pytest.mark.backends("ews")  # EWS impersonation; Graph's application access policy: test_graph_backend
    def test_impersonating_a_mailbox_the_service_account_may_not_open_is_a_readable_permanent_error(
        self, crm
    ):
        crm.sim.add_user("helpdesk@contoso.example", "helpdesk-pw")  # an account without impersonation rights
        crm.configure(service_account="helpdesk@contoso.example", service_password="helpdesk-pw")
        make_contacts(crm, 1)
        run = crm.contacts_pass()
        user = crm.alice
        user.refresh_from_db()
        assert run.outcome == Outcome.FAILED and user.health == Health.UNHEALTHY
        assert "impersonation" in user.last_error
