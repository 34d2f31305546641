"""Contacts through exchangelib: fields, indexed fields, extended properties, ChangeKeys, moves."""

from __future__ import annotations

import pytest
from exchangelib import Contact, ExtendedProperty, HTMLBody
from exchangelib.errors import ErrorIrresolvableConflict, ErrorItemNotFound
from exchangelib.folders import Contacts
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress

from exchange_sim import ExtendedKey, Simulator

from .conftest import SYNC_ID_SET


class CrmSyncId(ExtendedProperty):
    property_set_id = SYNC_ID_SET
    property_name = "CrmSyncId"
    property_type = "String"


@pytest.fixture(autouse=True)
def _sync_id_field():
    Contact.register("crm_sync_id", CrmSyncId)
    yield
    Contact.deregister("crm_sync_id")


def make_contact(account, **kwargs) -> Contact:
    defaults = dict(given_name="Ann", surname="Lee", display_name="Ann Lee")
    return Contact(folder=account.contacts, account=account, **{**defaults, **kwargs})


def test_it_round_trips_indexed_fields_and_the_sync_id(account):
    contact = make_contact(
        account,
        company_name="Fabrikam",
        job_title="Buyer",
        email_addresses=[EmailAddress(label="EmailAddress1", email="ann@fabrikam.example")],
        phone_numbers=[PhoneNumber(label="BusinessPhone", phone_number="+49 30 1"), PhoneNumber(label="MobilePhone", phone_number="+49 170 2")],
        physical_addresses=[PhysicalAddress(label="Business", street="Main 1", city="Berlin", zipcode="10115", country="DE")],
        crm_sync_id="crm-42",
    )
    contact.save()
    fetched = account.contacts.get(id=contact.id)
    assert fetched.company_name == "Fabrikam"
    assert fetched.email_addresses == [EmailAddress(label="EmailAddress1", email="ann@fabrikam.example")]
    assert {p.label: p.phone_number for p in fetched.phone_numbers} == {"BusinessPhone": "+49 30 1", "MobilePhone": "+49 170 2"}
    assert fetched.physical_addresses[0].city == "Berlin"
    assert fetched.physical_addresses[0].zipcode == "10115"
    assert fetched.crm_sync_id == "crm-42"


def test_it_stores_the_sync_id_as_a_named_string_property_in_its_set(account, exchange_sim: Simulator):
    make_contact(account, crm_sync_id="crm-7").save()
    stored = exchange_sim.user("alice@contoso.example").contacts()[0]
    key = ExtendedKey.create("String", property_set_id=SYNC_ID_SET, name="CrmSyncId")
    assert stored.extended == {key: "crm-7"}
    assert stored.extended_value("CrmSyncId") == "crm-7"


def test_it_finds_a_contact_by_its_sync_id(account):
    make_contact(account, crm_sync_id="a").save()
    make_contact(account, given_name="Bo", display_name="Bo Lee", crm_sync_id="b").save()
    assert [c.given_name for c in account.contacts.filter(crm_sync_id="b")] == ["Bo"]
    assert account.contacts.filter(crm_sync_id="missing").count() == 0


def test_it_returns_a_text_body_as_text(account, exchange_sim: Simulator):
    # BodyType Best (exchangelib's default) answers a body stored as plain text as text
    contact = make_contact(account, body="line one\nline <two>")
    contact.save()
    body = account.contacts.get(id=contact.id).body
    assert not isinstance(body, HTMLBody)
    assert body == "line one\nline <two>"
    # asked for as HTML (Graph, BodyType HTML) it is converted
    stored = exchange_sim.user("alice@contoso.example").get(contact.id)
    assert "line one<br>" in stored.body_html and "&lt;two&gt;" in stored.body_html


def test_it_gives_each_write_a_new_change_key_and_keeps_the_id(account):
    contact = make_contact(account)
    contact.save()
    first = contact.changekey
    contact.job_title = "CEO"
    contact.save(update_fields=["job_title"])
    assert contact.changekey != first
    fetched = account.contacts.get(id=contact.id)
    assert (fetched.id, fetched.changekey, fetched.job_title) == (contact.id, contact.changekey, "CEO")


def test_it_updates_and_deletes_single_indexed_entries(account, exchange_sim: Simulator):
    contact = make_contact(account, phone_numbers=[PhoneNumber(label="BusinessPhone", phone_number="1")])
    contact.save()
    contact.phone_numbers = [PhoneNumber(label="MobilePhone", phone_number="2")]
    contact.physical_addresses = [PhysicalAddress(label="Home", street="Elm 3")]
    contact.save(update_fields=["phone_numbers", "physical_addresses"])
    stored = exchange_sim.user("alice@contoso.example").get(contact.id)
    assert stored.props["PhoneNumbers"] == {"MobilePhone": "2"}
    assert stored.props["PhysicalAddresses"] == {"Home": {"Street": "Elm 3"}}


def test_it_clears_a_field_with_delete_item_field(account, exchange_sim: Simulator):
    contact = make_contact(account, job_title="Buyer", crm_sync_id="x")
    contact.save()
    contact.job_title = None
    contact.crm_sync_id = None
    contact.save(update_fields=["job_title", "crm_sync_id"])
    stored = exchange_sim.user("alice@contoso.example").get(contact.id)
    assert "JobTitle" not in stored.props
    assert stored.extended == {}


def test_it_refuses_a_stale_change_key(account, exchange_sim: Simulator):
    contact = make_contact(account)
    contact.save()
    exchange_sim.user("alice@contoso.example").edit(contact.id, JobTitle="edited in Outlook")
    contact.job_title = "from the CRM"
    with pytest.raises(ErrorIrresolvableConflict):
        contact.save(update_fields=["job_title"])


def test_it_overwrites_a_stale_change_key_with_always_overwrite(account, exchange_sim: Simulator):
    contact = make_contact(account)
    contact.save()
    exchange_sim.user("alice@contoso.example").edit(contact.id, JobTitle="edited in Outlook")
    contact.job_title = "from the CRM"
    account.bulk_update([(contact, ["job_title"])], conflict_resolution="AlwaysOverwrite")
    assert exchange_sim.user("alice@contoso.example").get(contact.id).props["JobTitle"] == "from the CRM"


def test_a_move_gives_the_contact_a_new_id(account, exchange_sim: Simulator):
    target = Contacts(parent=account.contacts, name="CRM")
    target.save()
    contact = make_contact(account)
    contact.save()
    old_id = contact.id
    contact.move(target)
    assert contact.id != old_id
    with pytest.raises(ErrorItemNotFound):
        account.contacts.get(id=old_id)
    assert [c.id for c in target.all()] == [contact.id]


def test_outlook_side_edits_are_visible_to_the_client(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    made = alice.create_contact(GivenName="Pat", Surname="Doe", EmailAddresses={"EmailAddress1": "pat@x.example"})
    assert made.props["DisplayName"] == "Pat Doe"
    alice.edit(made, Surname="Smith", EmailAddresses=None)
    fetched = account.contacts.get(id=made.id)
    assert (fetched.surname, fetched.email_addresses) == ("Smith", None)
    alice.delete(made)
    assert account.contacts.all().count() == 0
    assert [c.props["GivenName"] for c in alice.items("deleteditems")] == ["Pat"]


def test_find_item_pages_and_sorts(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    for name in ["Cy", "Al", "Bo", "Di", "Ed"]:
        alice.create_contact(GivenName=name, Surname="X")
    names = [c.given_name for c in account.contacts.all().order_by("given_name")]
    assert names == ["Al", "Bo", "Cy", "Di", "Ed"]
    paged = account.contacts.all().order_by("-given_name")
    paged.page_size = 2
    assert [c.given_name for c in paged] == ["Ed", "Di", "Cy", "Bo", "Al"]
    assert exchange_sim.counters["FindItem"] >= 4
    assert [c.given_name for c in account.contacts.filter(given_name__startswith="B")] == ["Bo"]
    assert [c.given_name for c in account.contacts.filter(given_name__istartswith="d")] == ["Di"]


def test_a_soft_delete_moves_the_item_out_of_sight(account, exchange_sim: Simulator):
    contact = make_contact(account)
    contact.save()
    contact.soft_delete()
    alice = exchange_sim.user("alice@contoso.example")
    assert alice.contacts() == [] and alice.items("deleteditems") == []
    assert [c.props["GivenName"] for c in alice.items("recoverableitemsdeletions")] == ["Ann"]


def test_it_offers_the_body_as_text_too(account):
    contact = make_contact(account, body=HTMLBody("<html><body><p>Hello <b>there</b></p></body></html>"))
    contact.save()
    fetched = account.contacts.all().only("text_body", "body").get(id=contact.id)
    assert fetched.text_body.strip() == "Hello there"
    assert "<b>there</b>" in fetched.body


class PublicScore(ExtendedProperty):
    distinguished_property_set_id = "PublicStrings"
    property_name = "CrmScore"
    property_type = "Integer"


class TaggedNote(ExtendedProperty):
    property_tag = 0x6701
    property_type = "String"


class Labels(ExtendedProperty):
    property_set_id = SYNC_ID_SET
    property_name = "CrmLabels"
    property_type = "StringArray"


@pytest.mark.parametrize(
    ("field", "cls", "value"),
    [("crm_score", PublicScore, 42), ("tagged_note", TaggedNote, "hello"), ("crm_labels", Labels, ["a", "b"])],
)
def test_it_keeps_extended_properties_of_every_kind(account, field, cls, value):
    Contact.register(field, cls)
    try:
        contact = make_contact(account, **{field: value})
        contact.save()
        assert getattr(account.contacts.get(id=contact.id), field) == value
        if not isinstance(value, list):
            assert [c.id for c in account.contacts.filter(**{field: value})] == [contact.id]
    finally:
        Contact.deregister(field)


def test_html_bodies_are_rewritten_into_a_full_document(account):
    contact = make_contact(account, body=HTMLBody("<p>Hi</p>"))
    contact.save()
    body = account.contacts.get(id=contact.id).body
    assert body != "<p>Hi</p>"
    assert "<p>Hi</p>" in body and "charset=utf-8" in body


def test_a_malformed_id_is_told_apart_from_a_vanished_one(account, exchange_sim: Simulator):
    from exchangelib.errors import ErrorInvalidIdMalformed

    made = exchange_sim.user("alice@contoso.example").create_contact(GivenName="Gone")
    exchange_sim.user("alice@contoso.example").delete(made, hard=True)
    with pytest.raises(ErrorItemNotFound):
        account.contacts.get(id=made.id)
    with pytest.raises(ErrorInvalidIdMalformed):
        account.contacts.get(id="not an id!")


def test_find_item_understands_and_or_not_exists_and_ranges(account, exchange_sim: Simulator):
    from exchangelib import Q

    alice = exchange_sim.user("alice@contoso.example")
    alice.create_contact(GivenName="Al", Surname="Archer", JobTitle="Buyer", CompanyName="Fabrikam")
    alice.create_contact(GivenName="Bo", Surname="Baker", CompanyName="Northwind")
    alice.create_contact(GivenName="Cy", Surname="Carter", JobTitle="CEO", CompanyName="Fabrikam Ltd")

    def names(query) -> list[str]:
        return sorted(c.given_name for c in query)

    assert names(account.contacts.filter(Q(surname="Archer") | Q(surname="Carter"))) == ["Al", "Cy"]
    assert names(account.contacts.filter(~Q(company_name="Northwind"))) == ["Al", "Cy"]
    assert names(account.contacts.filter(job_title__exists=True)) == ["Al", "Cy"]
    assert names(account.contacts.filter(company_name__icontains="fabrikam", job_title="CEO")) == ["Cy"]
    assert names(account.contacts.filter(surname__gte="B", surname__lt="C")) == ["Bo"]
    assert names(account.contacts.filter(surname__in=["Baker", "Nobody"])) == ["Bo"]


def test_the_business_fax_tag_0x3a24_is_the_phone_numbers_business_fax(exchange_sim):
    from exchange_sim import ExtendedKey

    fax = ExtendedKey.create("String", tag=0x3A24)
    alice = exchange_sim.user("alice@contoso.example")
    card = alice.create_contact(GivenName="Ann", extended={fax: "+31 20 1"})
    assert card.props["PhoneNumbers"] == {"BusinessFax": "+31 20 1"}
    card = alice.edit(card, PhoneNumbers={"BusinessFax": "+31 20 2", "MobilePhone": "+31 6 1"})
    assert card.extended[fax] == "+31 20 2"
    card = exchange_sim.store.update_item(card.id, set_extended={fax: ""})
    assert card.props["PhoneNumbers"] == {"MobilePhone": "+31 6 1"} and fax not in card.extended
