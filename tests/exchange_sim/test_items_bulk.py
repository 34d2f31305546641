"""bulk_create / bulk_update / bulk_delete in chunks, with per-item errors in the result list."""

from __future__ import annotations

import pytest
from exchangelib import Contact
from exchangelib.errors import ErrorIrresolvableConflict, ErrorItemNotFound

from exchange_sim import Simulator


def contacts(n: int) -> list[Contact]:
    return [Contact(given_name=f"P{i}", surname="Bulk", display_name=f"P{i} Bulk") for i in range(n)]


def test_bulk_create_sends_one_request_per_chunk(account, exchange_sim: Simulator):
    exchange_sim.counters.reset()
    results = account.bulk_create(folder=account.contacts, items=contacts(7), chunk_size=3)
    assert len(results) == 7
    assert all(r.id and r.changekey for r in results)
    assert exchange_sim.counters["CreateItem"] == 3
    assert len(exchange_sim.user("alice@contoso.example").contacts()) == 7


def test_bulk_update_reports_a_vanished_item_and_writes_the_others(account, exchange_sim: Simulator):
    account.bulk_create(folder=account.contacts, items=contacts(4), chunk_size=10)
    items = list(account.contacts.all().order_by("given_name"))
    exchange_sim.user("alice@contoso.example").delete(items[1], hard=True)
    for item in items:
        item.job_title = "CRM"
    exchange_sim.counters.reset()
    results = account.bulk_update([(i, ["job_title"]) for i in items], chunk_size=2)
    assert exchange_sim.counters["UpdateItem"] == 2
    assert isinstance(results[1], ErrorItemNotFound)
    assert [type(r) for r in results[:1] + results[2:]] == [tuple, tuple, tuple]
    titles = {c.props["GivenName"]: c.props["JobTitle"] for c in exchange_sim.user("alice@contoso.example").contacts()}
    assert titles == {"P0": "CRM", "P2": "CRM", "P3": "CRM"}


def test_bulk_update_with_a_stale_change_key_raises_irresolvable_conflict(account, exchange_sim: Simulator):
    # exchangelib does not return ErrorIrresolvableConflict in the list: the whole call raises
    account.bulk_create(folder=account.contacts, items=contacts(2), chunk_size=10)
    items = list(account.contacts.all())
    exchange_sim.user("alice@contoso.example").edit(items[0].id, JobTitle="edited in Outlook")
    items[0].job_title = "CRM"
    with pytest.raises(ErrorIrresolvableConflict):
        account.bulk_update([(items[0], ["job_title"])])


def test_bulk_delete_reports_items_that_are_already_gone(account, exchange_sim: Simulator):
    account.bulk_create(folder=account.contacts, items=contacts(3), chunk_size=10)
    items = list(account.contacts.all())
    exchange_sim.user("alice@contoso.example").delete(items[0], hard=True)
    results = account.bulk_delete(items, chunk_size=2)
    assert isinstance(results[0], ErrorItemNotFound)
    assert results[1:] == [True, True]
    assert exchange_sim.user("alice@contoso.example").contacts() == []


def test_bulk_move_gives_new_ids(account, exchange_sim: Simulator):
    account.bulk_create(folder=account.contacts, items=contacts(2), chunk_size=10)
    target = exchange_sim.user("alice@contoso.example").create_folder("Archive")
    folder = account.contacts / "Archive"
    assert folder.id == target.id
    items = list(account.contacts.all())
    moved = account.bulk_move(items, folder)
    assert {m[0] for m in moved}.isdisjoint({i.id for i in items})
    assert folder.all().count() == 2


def test_get_item_with_only_fields_returns_just_those(account, exchange_sim: Simulator):
    made = exchange_sim.user("alice@contoso.example").create_contact(GivenName="Only", Surname="Fields", JobTitle="Boss")
    fetched = account.contacts.all().only("given_name").get(id=made.id)
    assert fetched.given_name == "Only"
    assert fetched.job_title is None
