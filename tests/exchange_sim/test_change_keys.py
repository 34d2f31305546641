"""Change keys on DeleteItem and UpdateItem: a malformed one is refused, a stale one only blocks an update."""

from __future__ import annotations

import pytest
from exchangelib import Contact
from exchangelib.errors import ErrorInvalidChangeKey, ErrorIrresolvableConflict

from exchange_sim import Simulator


def saved_contact(account) -> Contact:
    contact = Contact(account=account, folder=account.contacts, given_name="Ann", surname="Lee", display_name="Ann Lee")
    contact.save()
    return contact


def test_a_malformed_change_key_on_delete_is_error_invalid_change_key(account, exchange_sim: Simulator):
    contacts = [saved_contact(account) for _ in range(3)]
    contacts[1].changekey = "XXX"
    results = account.bulk_delete(contacts)
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], ErrorInvalidChangeKey)
    assert [c.props["GivenName"] for c in exchange_sim.user("alice@contoso.example").contacts()] == ["Ann"]


def test_a_stale_change_key_on_delete_is_ignored(account, exchange_sim: Simulator):
    # Exchange deletes whatever the item has become since (DeleteItem does not compare change keys)
    contact = saved_contact(account)
    exchange_sim.user("alice@contoso.example").edit(contact, JobTitle="CEO")
    assert account.bulk_delete([contact]) == [True]


def test_a_malformed_change_key_on_update_is_error_invalid_change_key(account):
    contact = saved_contact(account)
    contact.changekey = "XXX"
    contact.job_title = "CEO"
    with pytest.raises(ErrorInvalidChangeKey):
        contact.save(update_fields=["job_title"])


def test_a_stale_change_key_on_update_is_a_conflict(account, exchange_sim: Simulator):
    contact = saved_contact(account)
    exchange_sim.user("alice@contoso.example").edit(contact, JobTitle="CEO")
    contact.job_title = "CFO"
    with pytest.raises(ErrorIrresolvableConflict):
        contact.save(update_fields=["job_title"])
