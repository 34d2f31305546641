"""Folders: distinguished ids, FindFolder, CreateFolder, DeleteFolder, exchangelib's folder walk."""

from __future__ import annotations

import pytest
from exchangelib import Q
from exchangelib.errors import ErrorFolderExists
from exchangelib.folders import Calendar, Contacts, DeletedItems, FolderCollection, Inbox, Tasks

from exchange_sim import Simulator

# The folders Exchange Online keeps below Contacts in every mailbox
STANDARD_CONTACT_FOLDERS = {"GAL Contacts", "Organizational Contacts", "Recipient Cache"}


def test_it_serves_the_distinguished_folders(account):
    assert isinstance(account.contacts, Contacts)
    assert account.contacts.name == "Contacts"
    assert isinstance(account.calendar, Calendar)
    assert isinstance(account.inbox, Inbox)
    assert isinstance(account.tasks, Tasks)
    assert isinstance(account.trash, DeletedItems)
    assert account.root.id
    assert account.msg_folder_root.name == "Top of Information Store"


def test_it_creates_and_finds_a_child_contacts_folder(account, exchange_sim: Simulator):
    folder = Contacts(parent=account.contacts, name="CRM")
    folder.save()
    assert [f.name for f in account.contacts.children if f.name not in STANDARD_CONTACT_FOLDERS] == ["CRM"]
    assert (account.contacts / "CRM").id == folder.id
    assert exchange_sim.user("alice@contoso.example").folder("contacts/CRM").id == folder.id


def test_it_walks_the_whole_tree_with_a_deep_find_folder(account, exchange_sim: Simulator):
    exchange_sim.user("alice@contoso.example").create_folder("Deep", parent="contacts")
    names = {f.name for f in account.root.walk()}
    assert {"Contacts", "Calendar", "Inbox", "Deep"} <= names


def test_it_refuses_a_second_folder_with_the_same_name(account):
    Contacts(parent=account.contacts, name="CRM").save()
    with pytest.raises(ErrorFolderExists):
        Contacts(parent=account.contacts, name="crm").save()


def test_it_deletes_a_folder_with_its_items(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    folder = Contacts(parent=account.contacts, name="Old")
    folder.save()
    alice.create_contact("contacts/Old", GivenName="Gone")
    folder.delete()
    assert [f.display_name for f in alice.folders("contacts") if not f.system] == []
    assert alice.all_contacts() == []


def test_it_filters_find_folder_by_display_name(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    alice.create_folder("A")
    alice.create_folder("B")
    found = FolderCollection(account=account, folders=[account.contacts]).find_folders(q=Q(name="B"))
    assert [f.name for f in found] == ["B"]


def test_it_renames_a_folder_and_keeps_its_id(account, exchange_sim: Simulator):
    folder = Contacts(parent=account.contacts, name="Old name")
    folder.save()
    folder.name = "New name"
    folder.save()
    assert exchange_sim.user("alice@contoso.example").folder("contacts/New name").id == folder.id


def test_a_copy_is_a_new_item_with_the_same_content(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    made = alice.create_contact(GivenName="Twin")
    target = alice.create_folder("Copies")
    item = account.contacts.get(id=made.id)
    copied_id = item.copy(account.contacts / "Copies")
    [copy] = alice.contacts("contacts/Copies")
    assert copy.props["GivenName"] == "Twin" and copy.id != made.id and copy.folder_id == target.id
    assert copied_id is None or copied_id[0] == copy.id


def test_sync_folder_hierarchy_reports_folders_created_renamed_and_deleted(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    first = list(account.contacts.sync_hierarchy())
    assert {(kind, f.name) for kind, f in first} == {("create", name) for name in STANDARD_CONTACT_FOLDERS}
    state = account.contacts.folder_sync_state
    alice.create_folder("Kept")
    alice.create_folder("Brief")
    alice.delete_folder("contacts/Brief")  # came and went: never reported
    changes = list(account.contacts.sync_hierarchy(sync_state=state))
    assert [(kind, f.name) for kind, f in changes] == [("create", "Kept")]
    state = account.contacts.folder_sync_state
    kept = alice.folder("contacts/Kept")
    exchange_sim.store.rename_folder(kept.id, "Renamed")
    assert [(k, f.name) for k, f in account.contacts.sync_hierarchy(sync_state=state)] == [("update", "Renamed")]
    state = account.contacts.folder_sync_state
    alice.delete_folder("contacts/Renamed")
    assert [(k, f.id) for k, f in account.contacts.sync_hierarchy(sync_state=state)] == [("delete", kept.id)]
