"""SyncFolderItems: opaque states, paging by MaxChangesReturned, Create/Update/Delete, corrupt states."""

from __future__ import annotations

import pytest
from exchangelib.errors import ErrorInvalidSyncStateData

from exchange_sim import Simulator


def sync(folder, state=None, page=100):
    changes = list(folder.sync_items(sync_state=state, max_changes_returned=page))
    return changes, folder.item_sync_state


def test_it_pages_a_first_sync_and_resumes_from_the_state(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    for i in range(7):
        alice.create_contact(GivenName=f"P{i}")
    exchange_sim.counters.reset()
    changes, state = sync(account.contacts, page=3)
    assert [kind for kind, _ in changes] == ["create"] * 7
    assert sorted(item.given_name for _, item in changes) == [f"P{i}" for i in range(7)]
    assert exchange_sim.counters["SyncFolderItems"] == 3
    assert sync(account.contacts, state)[0] == []


def test_it_reports_outlook_side_changes_since_a_state(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    kept = alice.create_contact(GivenName="Kept")
    edited = alice.create_contact(GivenName="Edited")
    deleted = alice.create_contact(GivenName="Deleted")
    _, state = sync(account.contacts)
    alice.edit(edited, Surname="Now")
    alice.delete(deleted)
    new = alice.create_contact(GivenName="New")
    changes, _ = sync(account.contacts, state)
    summary = {(kind, getattr(obj, "given_name", None) or obj.id) for kind, obj in changes}
    assert summary == {("update", "Edited"), ("delete", deleted.id), ("create", "New")}
    assert kept.id not in {getattr(obj, "id", None) for _, obj in changes}
    assert new.id in {obj.id for _, obj in changes}


def test_an_update_carries_the_new_change_key(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    made = alice.create_contact(GivenName="A")
    _, state = sync(account.contacts)
    edited = alice.edit(made, GivenName="B")
    changes, _ = sync(account.contacts, state)
    assert [(k, i.id, i.changekey) for k, i in changes] == [("update", made.id, edited.changekey)]


def test_an_item_created_and_deleted_between_syncs_is_not_reported(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    _, state = sync(account.contacts)
    alice.delete(alice.create_contact(GivenName="Brief"), hard=True)
    assert sync(account.contacts, state)[0] == []


def test_a_move_out_is_a_delete_and_a_move_in_a_create(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    alice.create_folder("CRM")
    made = alice.create_contact(GivenName="Mover")
    _, contacts_state = sync(account.contacts)
    _, crm_state = sync(account.contacts / "CRM")
    moved = alice.move(made, "contacts/CRM")
    assert [(k, o.id) for k, o in sync(account.contacts, contacts_state)[0]] == [("delete", made.id)]
    assert [(k, o.id) for k, o in sync(account.contacts / "CRM", crm_state)[0]] == [("create", moved.id)]


def test_paging_never_loses_a_create_when_items_change_between_pages(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    made = [alice.create_contact(GivenName=f"P{i}") for i in range(4)]
    first_page = list(account.contacts.sync_items(max_changes_returned=2))
    alice.edit(made[3], Surname="edited between pages")
    rest = list(account.contacts.sync_items(sync_state=account.contacts.item_sync_state, max_changes_returned=2))
    created = {i.id for k, i in first_page + rest if k == "create"}
    assert created == {m.id for m in made}


def test_a_corrupt_state_is_error_invalid_sync_state_data(account):
    with pytest.raises(ErrorInvalidSyncStateData):
        sync(account.contacts, "bm90IGEgc3RhdGU=")


def test_a_state_of_another_folder_is_refused(account):
    _, calendar_state = sync(account.calendar)
    with pytest.raises(ErrorInvalidSyncStateData):
        sync(account.contacts, calendar_state)


def test_the_invalid_sync_state_fault_fails_a_good_state_once(account, exchange_sim: Simulator):
    _, state = sync(account.contacts)
    exchange_sim.faults.invalid_sync_state(times=1)
    with pytest.raises(ErrorInvalidSyncStateData):
        sync(account.contacts, state)
    assert sync(account.contacts, state)[0] == []
