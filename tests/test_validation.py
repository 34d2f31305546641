"""The validation rules the reference documents demand, with human messages."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trustme
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from synccore.models import FieldMapping, SyncUser
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.dbbehaviour]


def messages_of(exc: ValidationError) -> str:
    return " ".join(m for msgs in exc.message_dict.values() for m in msgs)


class TestContactSyncNeedsIsoCodes:
    def test_c1_turning_contact_sync_on_names_the_countries_and_languages_missing_iso_codes(self):
        env = f.environment()
        narnia = f.country(env, iso_code="", name="Narnia")
        elvish = f.language(env, iso_code="", name="Elvish")
        f.contact(env, country=narnia, language=elvish)
        settings = env.settings
        settings.synchronize_contacts = True
        with pytest.raises(ValidationError) as exc:
            settings.full_clean()
        text = messages_of(exc.value)
        assert "Narnia" in text and "Elvish" in text
        assert "ISO codes" in text

    def test_c1_countries_and_languages_not_in_use_do_not_block(self):
        env = f.environment()
        f.country(env, iso_code="", name="Unused land")
        f.contact(env, country=f.country(env, "NL"), language=f.language(env, "nl"))
        settings = env.settings
        settings.synchronize_contacts = True
        settings.full_clean()

    def test_c1_contacts_not_synchronized_do_not_count(self):
        env = f.environment()
        f.contact(env, country=f.country(env, iso_code="", name="Atlantis"), synchronize=False)
        env.settings.synchronize_contacts = True
        env.settings.full_clean()

    def test_c1_companies_written_as_contacts_count_too(self):
        env = f.environment()
        f.company(env, country=f.country(env, iso_code="", name="Lilliput"))
        env.settings.synchronize_contacts = True
        with pytest.raises(ValidationError, match="Lilliput"):
            env.settings.full_clean()

    def test_an_invalid_country_iso_code_is_refused(self):
        env = f.environment()
        country = f.country(env, iso_code="XX", name="Nowhere")
        with pytest.raises(ValidationError, match="ISO 3166"):
            country.full_clean()

    def test_an_invalid_language_iso_code_is_refused(self):
        env = f.environment()
        language = f.language(env, iso_code="qq", name="Nothing")
        with pytest.raises(ValidationError, match="ISO 639"):
            language.full_clean()

    def test_iso_codes_are_normalised_to_their_usual_case(self):
        env = f.environment()
        country, language = f.country(env, iso_code="nl"), f.language(env, iso_code="NL")
        country.full_clean()
        language.full_clean()
        assert (country.iso_code, language.iso_code) == ("NL", "nl")


class TestSyncUserAddress:
    def test_k5_the_mailbox_must_be_the_employees_address(self):
        env = f.environment()
        employee = f.employee(env, "alice@contoso.example")
        user = SyncUser(environment=env, employee=employee, mailbox_email="bob@contoso.example")
        with pytest.raises(ValidationError) as exc:
            user.full_clean()
        assert "alice@contoso.example" in exc.value.message_dict["mailbox_email"][0]

    def test_k5_a_case_only_difference_is_accepted_with_a_visible_warning(self):
        env = f.environment()
        employee = f.employee(env, "Alice.Archer@Contoso.example")
        user = SyncUser(environment=env, employee=employee, mailbox_email="alice.archer@contoso.example")
        user.full_clean()
        assert "upper/lower case" in user.email_case_warning

    def test_k5_an_exact_match_has_no_warning(self):
        env = f.environment()
        user = f.sync_user(env, "alice@contoso.example")
        assert user.email_case_warning == ""

    def test_an_employee_without_an_address_cannot_be_a_sync_user(self):
        env = f.environment()
        employee = f.employee(env, "")
        user = SyncUser(environment=env, employee=employee, mailbox_email="x@contoso.example")
        with pytest.raises(ValidationError, match="no e-mail address"):
            user.full_clean()

    def test_an_employee_of_another_environment_is_refused(self):
        env, other = f.environment(), f.environment()
        employee = f.employee(other, "alice@contoso.example")
        user = SyncUser(environment=env, employee=employee, mailbox_email="alice@contoso.example")
        with pytest.raises(ValidationError, match="another environment"):
            user.full_clean()

    def test_one_sync_user_per_mailbox_per_environment_ignoring_case(self):
        env = f.environment()
        f.sync_user(env, "alice@contoso.example")
        employee = f.employee(env, "ALICE@contoso.example")
        duplicate = SyncUser(environment=env, employee=employee, mailbox_email="ALICE@contoso.example")
        with pytest.raises(ValidationError, match="already has a sync user"):
            duplicate.full_clean()
        with pytest.raises(IntegrityError), transaction.atomic():
            duplicate.save()

    def test_the_same_mailbox_may_be_synced_in_another_environment(self):
        f.sync_user(f.environment(), "alice@contoso.example")
        f.sync_user(f.environment(), "alice@contoso.example").full_clean()


class TestSettings:
    def test_the_pull_interval_must_be_greater_than_zero(self):
        env = f.environment()
        env.settings.pull_interval = 0
        with pytest.raises(ValidationError) as exc:
            env.settings.full_clean()
        assert "greater than zero" in exc.value.message_dict["pull_interval"][0]

    def test_the_pull_interval_is_a_number_and_a_unit(self):
        env = f.environment()
        env.settings.pull_interval, env.settings.pull_interval_unit = 12, "hours"
        assert env.settings.pull_interval_delta == timedelta(hours=12)

    def test_the_safety_limit_is_a_share_between_1_and_100(self):
        env = f.environment()
        env.settings.safety_limit_percent = 150
        with pytest.raises(ValidationError) as exc:
            env.settings.full_clean()
        assert "safety_limit_percent" in exc.value.message_dict

    def test_categorization_needs_a_folder_name(self):
        env = f.environment()
        env.settings.categorize_contacts, env.settings.contact_folder_name = True, " "
        with pytest.raises(ValidationError, match="folder name"):
            env.settings.full_clean()

    def test_missing_connection_details_are_listed_for_start(self):
        env = f.environment()
        problems = " ".join(env.settings.connection_problems())
        assert "EWS URL" in problems and "service account" in problems

    def test_graph_needs_the_app_registration_and_a_ca_bundle_that_exists(self, tmp_path):
        env = f.environment(backend="graph", ca_bundle=str(tmp_path / "missing.pem"))
        problems = " ".join(env.settings.connection_problems())
        assert "tenant id" in problems and "client id" in problems and "client secret" in problems
        assert "missing.pem is not a file on this server" in problems and "EWS URL" not in problems
        trustme.CA().cert_pem.write_to_path(str(tmp_path / "missing.pem"))  # now a real bundle
        assert "CA bundle" not in " ".join(env.settings.connection_problems())

    def test_organisation_domains_default_to_the_sync_users_domains(self):
        env = f.environment()
        f.sync_user(env, "alice@Contoso.example")
        assert env.settings.organisation_domains() == {"contoso.example"}
        env.settings.internal_domains = "contoso.example, @fabrikam.example"
        assert env.settings.organisation_domains() == {"contoso.example", "fabrikam.example"}


class TestCrmRecords:
    def test_an_activity_cannot_end_before_it_starts(self):
        env = f.environment()
        activity = f.activity(env)
        activity.end = activity.start - timedelta(minutes=1)
        with pytest.raises(ValidationError, match="before the start"):
            activity.full_clean()

    def test_an_unknown_time_zone_is_refused(self):
        activity = f.activity(f.environment(), time_zone="Mars/Olympus_Mons")
        with pytest.raises(ValidationError, match="IANA time zone"):
            activity.full_clean()

    def test_an_invalid_rrule_is_refused(self):
        activity = f.activity(f.environment(), recurrence="FREQ=SOMETIMES")
        with pytest.raises(ValidationError) as exc:
            activity.full_clean()
        assert "RRULE" in exc.value.message_dict["recurrence"][0]

    def test_a_malformed_contact_address_is_refused_with_the_field_named(self):
        contact = f.contact(f.environment(), email2="not-an-address")
        with pytest.raises(ValidationError) as exc:
            contact.full_clean()
        assert "not-an-address" in exc.value.message_dict["email2"][0]

    def test_external_ids_are_unique_per_environment(self):
        env = f.environment()
        f.company(env, external_id="C1")
        with pytest.raises(IntegrityError), transaction.atomic():
            f.company(env, external_id="C1")
        f.company(f.environment(), external_id="C1")


class TestFieldMapping:
    def test_c8_every_new_environment_gets_the_default_rows(self):
        env = f.environment()
        rows = set(
            FieldMapping.objects.filter(environment=env).values_list("entity", "crm_field", "exchange_field")
        )
        assert ("contact", "company_display", "company_name") in rows
        assert ("contact", "business_address", "business_address") in rows
        assert ("activity", "comment", "body") in rows
        assert {("contact", f"email{i}", f"email_address_{i}") for i in (1, 2, 3)} <= rows

    def test_c8_fixed_rows_cannot_be_changed(self):
        env = f.environment()
        row = FieldMapping.objects.get(environment=env, entity="contact", crm_field="last_name")
        row.exchange_field = "given_name"
        with pytest.raises(ValidationError, match="fixed"):
            row.full_clean()

    def test_c8_an_unknown_exchange_field_is_refused(self):
        env = f.environment()
        row = FieldMapping(environment=env, entity="contact", crm_field="fax", exchange_field="pager")
        with pytest.raises(ValidationError, match="pager"):
            row.full_clean()

    def test_c8_one_crm_field_per_exchange_field(self):
        env = f.environment()
        row = FieldMapping(
            environment=env, entity="contact", crm_field="home_phone", exchange_field="mobile_phone"
        )
        with pytest.raises(ValidationError, match="already mapped"):
            row.full_clean()
