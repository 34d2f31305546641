"""FindItem restrictions and sorting as Exchange evaluates them."""

from __future__ import annotations

from exchangelib import Message

from exchange_sim import Simulator


def make(account, subject, **kwargs) -> Message:
    item = Message(account=account, folder=account.drafts, subject=subject, categories=["restrict"], **kwargs)
    item.save()
    return item


def test_a_boolean_constant_1_matches_a_set_flag(account, exchange_sim: Simulator):
    # exchangelib writes booleans as Constant Value="1" / "0"; Exchange reads them as xs:boolean
    exchange_sim.request_log.enabled = True
    make(account, "With", reminder_is_set=True)
    make(account, "Without", reminder_is_set=False)
    assert [i.subject for i in account.drafts.filter(reminder_is_set=True)] == ["With"]
    assert [i.subject for i in account.drafts.filter(reminder_is_set=False)] == ["Without"]
    [find] = [e for e in exchange_sim.request_log.entries() if e.operation == "FindItem"][:1]
    assert 'Value="1"' in find.request


def test_empty_values_sort_first_ascending_and_last_descending(account):
    make(account, "B")
    make(account, None)
    make(account, "A")
    ascending = [i.subject for i in account.drafts.filter(categories__contains=["restrict"]).order_by("subject")]
    descending = [i.subject for i in account.drafts.filter(categories__contains=["restrict"]).order_by("-subject")]
    assert ascending == [None, "A", "B"]
    assert descending == ["B", "A", None]


def test_an_item_without_categories_sorts_before_one_with(account):
    make(account, "tagged")
    Message(account=account, folder=account.drafts, subject="untagged").save()
    assert [i.subject for i in account.drafts.all().order_by("categories")] == ["untagged", "tagged"]
