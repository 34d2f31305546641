"""A new contact takes its display name as subject; a subject cleared later stays cleared."""

from __future__ import annotations

from exchangelib import Contact


def test_a_new_contact_takes_its_display_name_as_subject(account):
    contact = Contact(account=account, folder=account.contacts, given_name="Ann", surname="Lee", display_name="Ann Lee")
    contact.save()
    assert account.contacts.get(id=contact.id).subject == "Ann Lee"


def test_a_cleared_subject_is_not_filled_again(account):
    contact = Contact(account=account, folder=account.contacts, given_name="Ann", surname="Lee", display_name="Ann Lee")
    contact.save()
    contact.subject = None
    contact.save(update_fields=["subject"])
    assert account.contacts.get(id=contact.id).subject is None
    contact.job_title = "CEO"
    contact.save(update_fields=["job_title"])
    assert account.contacts.get(id=contact.id).subject is None
